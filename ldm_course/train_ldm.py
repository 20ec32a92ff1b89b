"""Train the latent U-Net (notebook 04, `ldm-course train-ldm`): encode the training images once,
measure the scale factor, then epsilon-prediction on scaled latents with EMA and label dropout."""

import hashlib
from dataclasses import replace
from pathlib import Path

import torch

from ldm_course.checkpoint import load_tensors, save_tensors
from ldm_course.config import LDMTrainConfig, to_dict
from ldm_course.data import TensorImageDataset, classes_in_turn, twemoji
from ldm_course.diffusion import LatentDiffusion, diffusion_loss
from ldm_course.distributed import World, wrap
from ldm_course.latents import encoder_fingerprint, estimate_scale_factor
from ldm_course.limits import check_batch_size, check_config
from ldm_course.run_folder import dataset_fingerprint, prepare_run_dir
from ldm_course.schedules import make_schedule
from ldm_course.train import EMA, Loop, batch_indices, fit, group_batch_indices
from ldm_course.unet import UNet
from ldm_course.vae import VAE
from ldm_course.viz import image_grid, plot_history, save_figure


def fingerprint(vae: VAE, images: torch.Tensor) -> str:
    """sha256 of the encoder's weights and the images: what the cached latents depend on."""
    h = hashlib.sha256()
    for name, tensor in vae.encoder.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def cache_latents(
    vae: VAE, images: torch.Tensor, path: Path, *, batch_size: int = 256, key: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image, computed once and stored in `path` (safetensors).

    Training draws z = mean + std * eps afresh each step, so caching loses nothing. The cache is
    reused only if it was made by the same encoder weights from the same images; otherwise (another
    VAE passed to the same run folder, other data) it is recomputed. `key`: their `fingerprint`,
    if the caller has it already.
    """
    key = key or fingerprint(vae, images)
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
) -> tuple[LatentDiffusion, dict]:
    """Train (or resume) the U-Net on latents of `data` (default: Twemoji train split at cfg.size).

    Returns the LatentDiffusion with EMA weights (eval mode) and the history. The scale factor is
    1 / std of latents sampled from q(z|x) over the whole training set, stored with the weights.
    """
    check_config(cfg)
    device = torch.device(device)
    world = world or World(device=device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run_dir = Path(run_dir)
    data = data if data is not None else twemoji("train", size=cfg.size, labels=cfg.labels)
    if cfg.sample_by not in ("image", "group"):
        raise ValueError(f"sample_by must be 'image' or 'group', got {cfg.sample_by!r}")
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
    latents_key = fingerprint(vae, data.images)
    config = {
        "task": "ldm",
        "vae_source": vae_source,
        **to_dict(cfg),
        "data": dataset_fingerprint(data),
        "latents": latents_key,
    }
    prepare_run_dir(run_dir, config, resume=resume, is_main=world.is_main)
    mean, std = cache_latents(vae, data.images, run_dir / "latents.safetensors", key=latents_key)
    # seed 0 whatever cfg.seed: the factor belongs to the VAE and data, not to the run
    z_all = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
    scale_factor = estimate_scale_factor(z_all)
    labels = data.labels
    if cfg.flip:  # the encoder is not mirror-equivariant: encode the mirror images too
        mean_m, std_m = cache_latents(
            vae, data.images.flip(-1), run_dir / "latents-mirrored.safetensors"
        )  # (N, C, h, w) each
        mirrorable = data.mirrorable  # (N,) bools; None: every image
        if mirrorable is None:
            mirrorable = torch.ones(len(mean), dtype=torch.bool)

    num_classes = data.num_classes if cfg.conditional else None
    unet_cfg = replace(cfg.unet, num_classes=num_classes)
    torch.manual_seed(cfg.seed)  # the initial weights
    unet = UNet(unet_cfg).to(world.device)
    if cfg.init_from:
        init_weights(unet, cfg, scale_factor, latents_key)
    model = wrap(unet, world)
    schedule = make_schedule(cfg.schedule, cfg.num_train_timesteps)
    ldm = LatentDiffusion(vae, unet, schedule, scale_factor, image_size=cfg.size)
    ema = EMA(unet, cfg.ema_decay)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)

    def step_fn(step: int, gen: torch.Generator):
        if cfg.sample_by == "group":
            idx = group_batch_indices(
                step, groups=data.groups, batch_size=cfg.batch_size, seed=cfg.seed
            )  # (B,)
        else:
            idx = batch_indices(step, n=len(mean), batch_size=cfg.batch_size, seed=cfg.seed)
        b = len(idx)
        eps_z = torch.randn((b, *mean.shape[1:]), generator=gen)  # posterior sample noise
        t = torch.randint(0, schedule.num_steps, (b,), generator=gen)  # (B,)
        noise = torch.randn((b, *mean.shape[1:]), generator=gen)  # (B, C, h, w)
        drop = torch.rand(b, generator=gen) < cfg.cond_drop_prob  # (B,)
        mu, sigma = mean[idx], std[idx]  # (B, C, h, w) each
        if cfg.flip:  # drawn last, so every other draw of this step is as without flips
            mirror = (torch.rand(b, generator=gen) < 0.5) & mirrorable[idx]  # (B,)
            m = mirror.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
            mu, sigma = torch.where(m, mean_m[idx], mu), torch.where(m, std_m[idx], sigma)
        z_0 = (mu + sigma * eps_z) * scale_factor  # scaled latents, (B, C, h, w)
        y = None
        if num_classes is not None:
            y = torch.where(
                drop, torch.full_like(labels[idx], num_classes), labels[idx]
            )  # null class
        shard = [
            world.shard(v).to(world.device) if v is not None else None for v in (z_0, t, noise, y)
        ]
        with torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            loss = diffusion_loss(
                model, *shard[:3], schedule, shard[3], min_snr_gamma=cfg.min_snr_gamma
            )
        return loss, {"loss": loss.item()}

    def with_ema(fn):
        backup = {k: v.clone() for k, v in unet.state_dict().items()}
        ema.copy_to(unet)
        try:
            return fn()
        finally:
            unet.load_state_dict(backup)

    def artifacts(step: int, history: dict) -> None:
        # two samples for each class, or for 16 classes spread over many (99 subcategories)
        y = None
        if num_classes:
            y = classes_in_turn(min(num_classes, 16), num_classes).repeat(2).to(world.device)
        n = 16 if y is None else len(y)

        def sample():
            unet.eval()
            out = ldm.generate(
                n,
                steps=25,
                y=y,
                guidance_scale=3.0,
                progress=False,
                generator=torch.Generator().manual_seed(0),
            )
            unet.train()
            return out

        save_figure(
            image_grid(with_ema(sample), nrow=n // 2, title=f"step {step} (EMA, DDIM 25)"),
            run_dir / "samples.png",
        )
        if history["step"]:
            save_figure(plot_history(history), run_dir / "loss.png")

    def export(path: Path) -> None:
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
        save_tensors(path, ema.shadow, meta)

    loop = Loop(
        run_dir=run_dir,
        config=config,
        cfg=cfg,
        model=unet,
        optimizer=opt,
        step_fn=step_fn,
        ema=ema,
        artifacts=artifacts,
        export=export,
        world=world,
        progress=progress,
    )
    history = fit(loop, resume=resume)
    ema.copy_to(unet)
    return ldm.eval(), history
