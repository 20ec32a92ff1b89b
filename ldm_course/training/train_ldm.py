"""Train the latent U-Net (notebook 04, `ldm-course train-ldm`): encode the training images once,
measure the scale factor, then epsilon-prediction on scaled latents with EMA and label dropout."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from ldm_course.config import LDMTrainConfig, UNetConfig, to_dict
from ldm_course.course.viz import image_grid, plot_history, save_figure
from ldm_course.data import TensorImageDataset, classes_in_turn, twemoji
from ldm_course.diffusion import LatentDiffusion, diffusion_loss
from ldm_course.infra.checkpoint import load_tensors, save_tensors
from ldm_course.infra.device import check_device
from ldm_course.infra.distributed import World, wrap
from ldm_course.infra.limits import check_batch_size, check_config
from ldm_course.infra.run_folder import dataset_fingerprint, prepare_run_dir
from ldm_course.infra.run_lock import run_lock
from ldm_course.latents import encoder_fingerprint, estimate_scale_factor
from ldm_course.schedules import make_schedule
from ldm_course.training.train import (
    EMA,
    Loop,
    UpdateFn,
    WatchFn,
    batch_indices,
    call_watch,
    check_watch,
    fit,
    global_torch_state,
    group_batch_indices,
    network_rng,
    run_config,
)
from ldm_course.unet import UNet
from ldm_course.vae import VAE

# step_fn(model, mean, std, y, *, generator, cond_drop_prob) -> loss: the signature of notebook 04's
# exercise, the draws and loss of LatentDiffusion.training_step without its other options
LDMStepFn = Callable[..., torch.Tensor]
PREVIEW_STEPS = 25  # DDIM steps of samples.png (write_samples), every sample_every steps


@torch.no_grad()
def cache_latents(
    vae: VAE, images: torch.Tensor, path: Path, *, batch_size: int = 256, key: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image, computed once and stored in `path` (safetensors).

    Training draws z = mean + std * eps afresh each step, so caching loses nothing. The cache is
    reused only if it was made by the same encoder weights from the same images; otherwise (another
    VAE passed to the same run folder, other data) it is recomputed. `key`: their fingerprint,
    encoder_fingerprint(vae, images), if the caller has it already.
    """
    key = key or encoder_fingerprint(vae, images)
    if path.exists():
        tensors, meta = load_tensors(path)
        if meta.get("fingerprint") == key:
            return tensors["mean"], tensors["std"]
    device = next(vae.parameters()).device
    means, stds = [], []
    for x in images.split(batch_size):
        posterior = vae.encode(x.to(device))
        means.append(posterior.mean.cpu())
        stds.append(posterior.std.cpu())
    # contiguous: cat of chunk views keeps their strides, and reductions over another memory layout
    # round differently in the last bit (the scale factor must not depend on where latents came from)
    mean, std = torch.cat(means).contiguous(), torch.cat(stds).contiguous()  # (N, C, h, w) each
    save_tensors(path, {"mean": mean, "std": std}, {"images": len(images), "fingerprint": key})
    return mean, std


def init_weights(unet: UNet, cfg: LDMTrainConfig, scale_factor: float, latents_key: str) -> None:
    """Load cfg.init_from into `unet`: only weights trained for the same architecture, noise
    schedule and latents (the same encoder weights and images), else a clear error.

    Same latents: the stored fingerprint of the encoder and images must equal `latents_key`
    exactly, so a stage on another device (whose scale factor may differ in the last digits) is
    accepted. Files without one (written before it existed) compare scale factors to 1e-6.
    """
    from ldm_course.pretrained import load_unet

    init, meta = load_unet(cfg.init_from)
    source = f"init_from={cfg.init_from!r}"
    if init.cfg != unet.cfg:
        raise ValueError(
            f"{source} is a U-Net with config {init.cfg}, not {unet.cfg}; "
            "use the same unet settings (and conditional) as the run it comes from"
        )
    theirs = (meta["schedule"], meta["num_train_timesteps"])
    if theirs != (cfg.schedule, cfg.num_train_timesteps):
        raise ValueError(
            f"{source} was trained with the {theirs} noise schedule, this run uses "
            f"{(cfg.schedule, cfg.num_train_timesteps)}; set schedule/num_train_timesteps to match"
        )
    if "latents_fingerprint" in meta:
        same = meta["latents_fingerprint"] == latents_key
        what = "latents of another encoder or other images"
    else:
        same = abs(meta["scale_factor"] - scale_factor) <= 1e-6 * scale_factor
        what = f"latents scaled by {meta['scale_factor']:.6f}, this run's by {scale_factor:.6f}"
    if not same:
        raise ValueError(f"{source} was trained on {what}: pass the same --vae (and data) it used")
    unet.load_state_dict(init.state_dict())


def check_run(cfg: LDMTrainConfig, data: TensorImageDataset, vae: VAE) -> LDMTrainConfig:
    """Refuse settings that cannot work with this data and VAE, before anything is written; return
    `cfg` with unet.num_classes set to the value the model is built with (the data's class count
    for a conditional model, None otherwise), as config.json then records it.

    - images of `size`, and size a multiple of the VAE's factor f: latents of size h = size / f
    - h a multiple of the U-Net's factor 2**(len(unet.channel_mult) - 1), the VAE's latent
      channels = unet.in_channels, unet.attention_levels in range(len(unet.channel_mult))
    - an explicit unet.num_classes equal to the data's class count (None when unconditional)
    - num_train_timesteps >= the PREVIEW_STEPS DDIM steps of samples.png when sample_every > 0
    """
    from ldm_course.training.train_vae import check_image_size

    check_image_size(cfg.size, data.images, vae.downsample_factor, what="VAE")
    h, u = cfg.size // vae.downsample_factor, cfg.unet
    factor = 2 ** (len(u.channel_mult) - 1)
    if h % factor:
        raise ValueError(
            f"size={cfg.size} gives {h}x{h} latents (VAE factor {vae.downsample_factor}), not a "
            f"multiple of the U-Net's factor {factor} (2**(len(unet.channel_mult) - 1)); use "
            f"--set size={vae.downsample_factor * factor * -(-h // factor)} or fewer U-Net levels "
            "(a shorter unet.channel_mult)"
        )
    if u.in_channels != vae.cfg.latent_channels:
        raise ValueError(
            f"unet.in_channels={u.in_channels}, but the VAE's latents have "
            f"{vae.cfg.latent_channels} channels; use --set unet.in_channels={vae.cfg.latent_channels}"
        )
    levels = range(len(u.channel_mult))
    outside = [lv for lv in u.attention_levels if lv not in levels]
    if outside:
        raise ValueError(
            f"unet.attention_levels={','.join(map(str, u.attention_levels))}: level(s) {outside} do "
            f"not exist; the U-Net has levels 0..{len(u.channel_mult) - 1} (one per channel_mult)"
        )
    num_classes = data.num_classes if cfg.conditional else None
    if u.num_classes is not None and u.num_classes != num_classes:
        why = f"the data has {num_classes} classes" if cfg.conditional else "conditional=False"
        fix = num_classes if cfg.conditional else "None"
        raise ValueError(
            f"unet.num_classes={u.num_classes}, but {why}; drop the setting (it follows the "
            f"data) or use --set unet.num_classes={fix}"
        )
    if cfg.sample_every > 0 and cfg.num_train_timesteps < PREVIEW_STEPS:
        raise ValueError(
            f"num_train_timesteps={cfg.num_train_timesteps} is fewer than the {PREVIEW_STEPS} DDIM "
            f"steps of the samples.png preview; use --set num_train_timesteps={PREVIEW_STEPS} or "
            "more, or --set sample_every=0"
        )
    return replace(cfg, unet=replace(u, num_classes=num_classes))


@dataclass
class TrainingLatents:
    """What each batch of train_ldm is drawn from: the cached posterior q(z|x) of every image."""

    mean: torch.Tensor  # (N, C, h, w)
    std: torch.Tensor  # (N, C, h, w)
    labels: torch.Tensor | None  # (N,) class ids; None: an unconditional model
    groups: torch.Tensor | None = None  # (N,) group ids, for sample_by="group"
    # flip=true: posterior mean and std of the mirror images, and which images may be mirrored
    mirror: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


def check_step_fn(cfg: LDMTrainConfig, world: World) -> None:
    """A learner's step_fn has the exercise's signature: no Min-SNR weights, no mirror images, the
    whole batch on one process. Refuse the settings it would silently ignore."""
    fix = "or train with the built-in step (step_fn=None)"
    if cfg.min_snr_gamma > 0:
        raise ValueError(
            f"step_fn computes the plain loss L_simple, but min_snr_gamma={cfg.min_snr_gamma}; "
            f"set min_snr_gamma=0, {fix}"
        )
    if cfg.flip:
        raise ValueError(f"step_fn takes no mirror images, but flip=True; set flip=False, {fix}")
    if world.size > 1:
        raise ValueError(
            f"step_fn trains the whole batch on one process, but the world size is {world.size} "
            f"(DDP); train on one device, {fix}"
        )


def ldm_step(
    step: int,
    gen: torch.Generator,
    *,
    ldm: LatentDiffusion,
    model: torch.nn.Module,
    latents: TrainingLatents,
    cfg: LDMTrainConfig,
    world: World,
    step_fn: LDMStepFn | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch of `step` (a function of the seed and the step), then LatentDiffusion.training_step
    (or the learner's step_fn, given the same batch and generator); with flip or several processes,
    loop_step: training_step's draws and loss with the loop's own additions.

    Every random draw is a function of (cfg.seed, step), in this order:
      1. the batch: batch_indices / group_batch_indices (generators of their own, per epoch)
      2. `gen`, the step's generator: the four draws training_step lists (posterior sample, t,
         noise, label dropout), then with flip the mirror coins (loop_step)
      3. the U-Net's own draws (dropout masks): torch's global RNG, seeded for this step from a
         copy of `gen` (network_rng) and restored afterwards
    """
    if cfg.sample_by == "group":
        idx = group_batch_indices(
            step, groups=latents.groups, batch_size=cfg.batch_size, seed=cfg.seed
        )  # (B,)
    else:
        idx = batch_indices(step, n=len(latents.mean), batch_size=cfg.batch_size, seed=cfg.seed)
    mean, std = latents.mean[idx], latents.std[idx]  # (B, C, h, w) each
    y = latents.labels[idx] if latents.labels is not None else None  # (B,)
    with network_rng(gen, world.device):
        if step_fn is not None:
            loss = step_fn(ldm, mean, std, y, generator=gen, cond_drop_prob=cfg.cond_drop_prob)
        elif latents.mirror is None and world.size == 1:
            loss = ldm.training_step(
                mean,
                std,
                y,
                generator=gen,
                cond_drop_prob=cfg.cond_drop_prob,
                min_snr_gamma=cfg.min_snr_gamma,
            )
        else:
            mirror = tuple(v[idx] for v in latents.mirror) if latents.mirror is not None else None
            loss = loop_step(ldm, model, mean, std, y, gen, cfg=cfg, mirror=mirror, world=world)
    return loss, {"loss": loss.item()}


def loop_step(
    ldm: LatentDiffusion,
    model: torch.nn.Module,
    mean: torch.Tensor,
    std: torch.Tensor,
    y: torch.Tensor | None,
    gen: torch.Generator,
    *,
    cfg: LDMTrainConfig,
    mirror: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    world: World,
) -> torch.Tensor:
    """LatentDiffusion.training_step, draw for draw, with what only the training loop needs:
    - flip (mirror = the mirror images' posterior mean and std (B, C, h, w), and mirrorable
      (B,)): a fifth draw, a coin per image; where it lands and the image is mirrorable, the
      latent comes from the mirror image. Drawn after the four of training_step, so those are
      the same with and without flip (a run with flip=False matches one without the option).
    - DDP: the draws are those of the global batch; this process trains rows world.shard(...)
      through `model`, the U-Net wrapped in DistributedDataParallel, so N processes compute the
      gradient of one process on the whole batch.
    tests/test_training_step.py checks that without flip, on one process, it equals training_step.
    """
    b = mean.shape[0]
    eps_z = torch.randn(mean.shape, generator=gen)  # (B, C, h, w)  draws 1-4: training_step's
    t = torch.randint(0, ldm.schedule.num_steps, (b,), generator=gen)  # (B,)
    noise = torch.randn(mean.shape, generator=gen)  # (B, C, h, w)
    drop = torch.rand(b, generator=gen) < cfg.cond_drop_prob  # (B,)
    if mirror is not None:
        mirror_mean, mirror_std, mirrorable = mirror
        flipped = (torch.rand(b, generator=gen) < 0.5) & mirrorable  # (B,)  draw 5
        m = flipped.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
        mean, std = torch.where(m, mirror_mean, mean), torch.where(m, mirror_std, std)
    z_0 = (mean + std * eps_z) * ldm.scale_factor  # (B, C, h, w)
    if y is not None:
        y = torch.where(drop, torch.full_like(y, ldm.unet.cfg.num_classes), y)  # null class
        y = world.shard(y).to(ldm.device)  # (B / world,)
    z_0, t, noise = (world.shard(v).to(ldm.device) for v in (z_0, t, noise))  # B / world rows
    return diffusion_loss(model, z_0, t, noise, ldm.schedule, y, min_snr_gamma=cfg.min_snr_gamma)


def build(unet_cfg: UNetConfig, build_unet: Callable[[UNetConfig], UNet] | None) -> UNet:
    """UNet(unet_cfg), or build_unet(unet_cfg) checked to be a UNet of exactly that config."""
    if build_unet is None:
        return UNet(unet_cfg)
    unet = build_unet(unet_cfg)
    if not isinstance(unet, UNet) or unet.cfg != unet_cfg:
        got = f"a UNet with config {unet.cfg}" if isinstance(unet, UNet) else type(unet).__name__
        raise ValueError(
            f"build_unet returned {got}, not a UNet of the run's config {unet_cfg}; build it as "
            "UNet(cfg, ...) with the config it is given"
        )
    return unet


def write_samples(step: int, history: dict, *, ldm: LatentDiffusion, ema: EMA, run_dir: Path):
    """samples.png (EMA weights, DDIM PREVIEW_STEPS): two per class, or for 16 classes spread over many
    (99 subcategories); and loss.png."""
    num_classes = ldm.unet.cfg.num_classes
    y = None
    if num_classes:
        y = classes_in_turn(min(num_classes, 16), num_classes).repeat(2).to(ldm.device)
    n = 16 if y is None else len(y)
    ldm.unet.eval()
    with ema.applied_to(ldm.unet):
        images = ldm.generate(
            n,
            steps=PREVIEW_STEPS,
            y=y,
            guidance_scale=3.0,
            progress=False,
            generator=torch.Generator().manual_seed(0),
        )
    ldm.unet.train()
    title = f"step {step} (EMA, DDIM {PREVIEW_STEPS})"
    save_figure(image_grid(images, nrow=n // 2, title=title), run_dir / "samples.png")
    if history["step"]:
        save_figure(plot_history(history), run_dir / "loss.png")


def save_unet(path: Path, *, ema: EMA, meta: dict) -> None:
    """model.safetensors: the EMA weights and what loading them needs (pretrained.load_unet)."""
    save_tensors(path, ema.shadow, meta)


def train_ldm(
    cfg: LDMTrainConfig,
    run_dir: str | Path,
    vae: VAE,
    *,
    vae_source: str = "given",
    data: TensorImageDataset | None = None,
    device: torch.device | str = "cpu",
    resume: bool = False,
    world: World | None = None,
    progress: bool = True,
    step_fn: LDMStepFn | None = None,
    build_unet: Callable[[UNetConfig], UNet] | None = None,
    update_fn: UpdateFn | None = None,
    watch: WatchFn | None = None,
    watch_at: Sequence[int] = (),
) -> tuple[LatentDiffusion, dict]:
    """Train (or resume) the U-Net on latents of `data` (default: Twemoji train split at cfg.size).

    Returns the LatentDiffusion with EMA weights (eval mode, with the data's class names) and the
    history. The scale factor is 1 / std of latents sampled from q(z|x) over the whole training
    set, stored with the weights. The caller's thread count and global RNG are left as they were.

    step_fn: a training step to use in place of LatentDiffusion.training_step (notebook 04's
    exercise), called as step_fn(ldm, mean, std, y, generator=, cond_drop_prob=) -> loss with the
    batch's posterior mean and std (B, C, h, w), labels y (B,) or None, and the step's generator;
    it must draw and compute what training_step does. It has no Min-SNR, mirror or DDP option, so
    it needs min_snr_gamma=0, flip=False and one process. Not recorded in config.json: resume a
    run with the step it started with.

    The other hooks, none recorded in config.json either:
    build_unet(unet_cfg) -> UNet: builds the U-Net in place of UNet(unet_cfg) (notebook 04: one
    made of the learner's blocks), inside the seeded global RNG; its .cfg must equal unet_cfg.
    update_fn(loss, *, model, optimizer, ema, step, max_grad_norm) -> grad norm: the weight
    update in place of train.optimizer_update (notebook 05); it has no gradient scaler, so fp16
    is refused.
    watch(step, ldm), at each step of watch_at (0: before the first step): sees the
    LatentDiffusion with the EMA weights, in eval mode, under no_grad (train.call_watch); the
    run's result is the same with and without it. A resumed run watches the steps after its
    checkpoint only.
    """
    check_config(cfg)  # every setting's range (--set checks them as it parses, too)
    watch_at = check_watch(watch, watch_at, cfg.steps)
    if world is None:  # a World from setup_world has a checked device already
        world = World(device=check_device(device))  # a device this machine lacks: one clear error
    if step_fn is not None:
        check_step_fn(cfg, world)
    run_dir = Path(run_dir)
    # one writer per folder: a second run, or a --resume of this one, is refused until it ends;
    # inside global_torch_state the initial weights come from cfg.seed
    lock = run_lock(run_dir, resume=resume, is_main=world.is_main)
    with lock, global_torch_state(cfg.seed, num_threads=cfg.num_threads, device=world.device):
        data = data if data is not None else twemoji("train", size=cfg.size, labels=cfg.labels)
        cfg = check_run(cfg, data, vae)
        if cfg.sample_by == "group" and data.groups is None:
            raise ValueError(
                "sample_by='group' needs a dataset with groups (the built-in Twemoji has them); "
                "use sample_by=image for this data"
            )
        if cfg.sample_by == "group":
            check_batch_size(cfg.batch_size, int(data.groups.max()) + 1, "groups")
        else:
            check_batch_size(cfg.batch_size, len(data), "images")
        vae = vae.to(world.device).eval().requires_grad_(False)
        latents_key = encoder_fingerprint(vae, data.images)
        inputs = {"task": "ldm", "vae_source": vae_source, "data": dataset_fingerprint(data)}
        inputs["latents"] = latents_key
        prepare_run_dir(run_dir, run_config(cfg, inputs), resume=resume, is_main=world.is_main)
        mean, std = cache_latents(
            vae, data.images, run_dir / "latents.safetensors", key=latents_key
        )
        # seed 0 whatever cfg.seed: the factor belongs to the VAE and data, not to the run
        z_all = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
        scale_factor = estimate_scale_factor(z_all)
        num_classes = data.num_classes if cfg.conditional else None
        latents = TrainingLatents(mean, std, data.labels if num_classes else None, data.groups)
        if cfg.flip:  # the encoder is not mirror-equivariant: encode the mirror images too
            mean_m, std_m = cache_latents(
                vae, data.images.flip(-1), run_dir / "latents-mirrored.safetensors"
            )  # (N, C, h, w) each
            mirrorable = data.mirrorable  # (N,) bools; None: every image
            if mirrorable is None:
                mirrorable = torch.ones(len(mean), dtype=torch.bool)
            latents.mirror = (mean_m, std_m, mirrorable)

        unet_cfg = replace(cfg.unet, num_classes=num_classes)
        unet = build(unet_cfg, build_unet).to(world.device)  # initial weights: cfg.seed
        if cfg.init_from:
            init_weights(unet, cfg, scale_factor, latents_key)
        schedule = make_schedule(cfg.schedule, cfg.num_train_timesteps)
        ldm = LatentDiffusion(
            vae, unet, schedule, scale_factor, image_size=cfg.size, class_names=data.class_names
        )
        ema = EMA(unet, cfg.ema_decay)
        meta = {
            "kind": "unet",
            "config": to_dict(unet_cfg),
            "scale_factor": scale_factor,
            "latents_fingerprint": latents_key,  # encoder weights + training images (init_from)
            "encoder_fingerprint": encoder_fingerprint(vae),  # the latent space (sample --vae)
            "schedule": cfg.schedule,
            "num_train_timesteps": cfg.num_train_timesteps,
            "image_size": cfg.size,
            "vae_source": vae_source,
            "class_names": list(data.class_names),
        }
        loop = Loop(
            run_dir=run_dir,
            cfg=cfg,
            inputs=inputs,
            model=unet,
            optimizer=torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0),
            step_fn=partial(
                ldm_step,
                ldm=ldm,
                model=wrap(unet, world),
                latents=latents,
                cfg=cfg,
                world=world,
                step_fn=step_fn,
            ),
            ema=ema,
            artifacts=partial(write_samples, ldm=ldm, ema=ema, run_dir=run_dir),
            export=partial(save_unet, ema=ema, meta=meta),
            world=world,
            progress=progress,
            update_fn=update_fn,
            watch_at=watch_at,
        )
        if watch is not None:
            loop.watch = partial(call_watch, fn=watch, model=ldm, ema=ema, trained=unet)
        history = fit(loop, resume=resume)
        ema.copy_to(unet)
        return ldm.eval(), history
