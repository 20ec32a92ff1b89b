"""Train the autoencoder (notebook 01, `ldm-course train-vae`): L1 (or L2) + LPIPS + tiny KL,
optionally + a PatchGAN adversarial term for the decoder (discriminator.py)."""

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch

from ldm_course.config import VAETrainConfig, to_dict
from ldm_course.course.viz import plot_history, reconstructions, save_figure
from ldm_course.data import TensorImageDataset, twemoji
from ldm_course.discriminator import PatchDiscriminator, adversarial_terms
from ldm_course.infra.checkpoint import save_tensors
from ldm_course.infra.device import check_device
from ldm_course.infra.distributed import World, wrap
from ldm_course.infra.limits import check_batch_size, check_config
from ldm_course.infra.run_folder import dataset_fingerprint, prepare_run_dir
from ldm_course.infra.run_lock import run_lock
from ldm_course.training.train import (
    Loop,
    WatchFn,
    batch_indices,
    call_watch,
    check_watch,
    fit,
    global_torch_state,
    network_rng,
    run_config,
)
from ldm_course.vae import VAE, DiagonalGaussian, vae_loss

# loss_fn(x, recon, posterior, *, lpips, perceptual_weight, kl_weight) -> (total, terms): the
# signature of the notebook 01 exercise; terms holds "recon", "kl" and, with LPIPS, "lpips"
VAELossFn = Callable[..., tuple[torch.Tensor, dict]]


def kl_weight_at(step: int, *, kl_weight: float, kl_warmup_steps: int) -> float:
    """The KL weight at `step` (from 0): kl_weight * min(1, (step + 1) / kl_warmup_steps), a linear
    ramp from kl_weight / kl_warmup_steps at step 0 to the full weight at step kl_warmup_steps - 1
    (KL annealing, Bowman et al. 2016, sec. 3.1). kl_warmup_steps = 0: kl_weight at every step."""
    if kl_warmup_steps <= 0:
        return kl_weight
    return kl_weight * min(1.0, (step + 1) / kl_warmup_steps)


def check_loss_fn(cfg: VAETrainConfig) -> None:
    """A learner's loss_fn has the exercise's signature: no recon_loss or perceptual_batch option.
    Refuse the settings it would silently ignore."""
    if cfg.recon != "l1":
        raise ValueError(
            f"loss_fn computes an L1 reconstruction term, but recon={cfg.recon!r}; "
            "set recon='l1', or train with the built-in loss (loss_fn=None)"
        )
    if cfg.perceptual_weight > 0 and cfg.perceptual_batch not in (0, cfg.batch_size):
        raise ValueError(
            f"loss_fn takes LPIPS over the whole batch, but perceptual_batch={cfg.perceptual_batch} "
            f"(batch_size={cfg.batch_size}); set perceptual_batch=0, or train with the built-in "
            "loss (loss_fn=None)"
        )


def learner_loss(
    loss_fn: VAELossFn,
    x: torch.Tensor,
    recon: torch.Tensor,
    posterior: DiagonalGaussian,
    *,
    lpips: torch.nn.Module | None,
    perceptual_weight: float,
    kl_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """loss_fn's (total, terms) as vae_loss returns them: the same keys, floats, "total" last."""
    total, terms = loss_fn(
        x, recon, posterior, lpips=lpips, perceptual_weight=perceptual_weight, kl_weight=kl_weight
    )
    keys = ["recon", "kl"] + (["lpips"] if perceptual_weight > 0 else [])
    missing = [k for k in keys if k not in terms]
    extra = sorted(set(terms) - {*keys, "total"})
    if missing or extra:
        raise ValueError(
            f"loss_fn returned terms {sorted(terms)}; the training history needs exactly {keys} "
            f"(missing {missing}, unexpected {extra})"
        )
    parts = {k: terms[k].item() if torch.is_tensor(terms[k]) else float(terms[k]) for k in keys}
    parts["total"] = total.item()
    return total, parts


def check_image_size(size: int, images: torch.Tensor, factor: int, *, what: str) -> None:
    """The images must be `size` x `size` (the `size` setting) and `size` a multiple of the VAE's
    downsampling factor f = 2**(len(channel_mult) - 1), so that the latents are (size / f)^2."""
    if tuple(images.shape[-2:]) != (size, size):
        raise ValueError(
            f"the images are {images.shape[-2]}x{images.shape[-1]}, but size={size}; "
            f"use --set size={images.shape[-1]} (or --resize to resize them to {size})"
        )
    if size % factor:
        up = -(-size // factor) * factor
        raise ValueError(
            f"size={size} is not a multiple of the {what}'s downsampling factor {factor} "
            f"(2**(len(channel_mult) - 1)); use --set size={up} with --resize, or fewer levels"
        )


def init_vae(vae: VAE, source: str) -> None:
    """Load the VAE weights in `source` (a run folder or .safetensors) into `vae`: only weights of
    the same config (a GroupNorm grouping, for one, would load into the same shapes unnoticed)."""
    from ldm_course.pretrained import load_vae

    init = load_vae(source)
    if init.cfg != vae.cfg:
        raise ValueError(
            f"init_from={source!r} is a VAE with config {init.cfg}, not {vae.cfg}; "
            "use the same vae settings as the run it comes from"
        )
    vae.load_state_dict(init.state_dict())


def vae_step(
    step: int,
    gen: torch.Generator,
    *,
    vae: VAE,
    model: torch.nn.Module,
    images: torch.Tensor,
    lpips: torch.nn.Module | None,
    disc: PatchDiscriminator | None,
    cfg: VAETrainConfig,
    world: World,
    loss_fn: VAELossFn | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One step's loss: vae_loss (or the learner's loss_fn) on the batch of `step`, with the KL
    weight of kl_weight_at, plus the adversarial terms with a discriminator. The posterior's noise
    is drawn from `gen` for the whole batch, so a batch split over GPUs is trained on the same
    noise as on one.

    Every random draw is a function of (cfg.seed, step), in this order:
      1. the batch: batch_indices (a generator of its own, per epoch)
      2. `gen`, the step's generator: the posterior noise eps of z = mean + std * eps
      3. anything the networks or loss_fn draw on their own (none of the built-in ones do): torch's
         global RNG, seeded for this step from a copy of `gen` (network_rng) and restored afterwards
    """
    frozen = not cfg.train_encoder or (cfg.freeze_encoder_at and step >= cfg.freeze_encoder_at)
    vae.encoder.requires_grad_(not frozen)
    idx = batch_indices(step, n=len(images), batch_size=cfg.batch_size, seed=cfg.seed)
    x = images[world.shard(idx)].to(world.device)  # (B / world, 3, S, S)
    h = cfg.size // vae.downsample_factor
    noise = torch.randn((cfg.batch_size, cfg.vae.latent_channels, h, h), generator=gen)
    noise = world.shard(noise).to(world.device)  # (B / world, C, h, w): this process's rows
    with network_rng(gen, world.device):
        return _vae_terms(step, x, noise, vae, model, lpips, disc, cfg, loss_fn)


def _vae_terms(step, x, noise, vae, model, lpips, disc, cfg, loss_fn):
    """vae_step's forward pass and loss terms for the batch x and posterior noise it drew."""
    recon, posterior = model(x, noise=noise)
    recon = recon.float()
    kl_weight = kl_weight_at(step, kl_weight=cfg.kl_weight, kl_warmup_steps=cfg.kl_warmup_steps)
    if loss_fn is None:
        total, parts = vae_loss(
            x,
            recon,
            posterior,
            lpips=lpips,
            perceptual_weight=cfg.perceptual_weight,
            kl_weight=kl_weight,
            recon_loss=cfg.recon,
            perceptual_batch=cfg.perceptual_batch,
        )
    else:
        total, parts = learner_loss(
            loss_fn,
            x,
            recon,
            posterior,
            lpips=lpips,
            perceptual_weight=cfg.perceptual_weight,
            kl_weight=kl_weight,
        )
    if disc is None:
        return total, parts
    weight = cfg.adversarial_weight if step >= cfg.adversarial_start else 0.0
    adv, adv_parts = adversarial_terms(
        disc, x, recon, nll=total, last_layer=vae.decoder.conv_out.weight, weight=weight
    )
    # "total" stays the autoencoder's own objective; d_loss is logged beside it
    adv_parts["total"] = parts["total"] + adv_parts["adv_weight"] * adv_parts["g_adv"]
    return total + adv, {**parts, **adv_parts}


def write_reconstructions(
    step: int, history: dict, *, vae: VAE, preview: torch.Tensor, run_dir: Path
) -> None:
    """reconstructions.png of the fixed preview images, and loss.png."""
    vae.eval()
    with torch.no_grad():
        recon = vae.decode(vae.encode(preview).mode())
    vae.train()
    save_figure(
        reconstructions(preview, recon, title=f"step {step}"), run_dir / "reconstructions.png"
    )
    if history["step"]:
        save_figure(plot_history(history), run_dir / "loss.png")


def save_vae(path: Path, *, vae: VAE) -> None:
    """model.safetensors: the weights and the config that builds them (pretrained.load_vae)."""
    save_tensors(path, vae.state_dict(), {"kind": "vae", "config": to_dict(vae.cfg)})


def train_vae(
    cfg: VAETrainConfig,
    run_dir: str | Path,
    *,
    data: TensorImageDataset | None = None,
    device: torch.device | str = "cpu",
    resume: bool = False,
    world: World | None = None,
    progress: bool = True,
    loss_fn: VAELossFn | None = None,
    watch: WatchFn | None = None,
    watch_at: Sequence[int] = (),
) -> tuple[VAE, dict]:
    """Train (or resume) a VAE on `data` (default: the built-in Twemoji train split at cfg.size).

    Returns the trained VAE (eval mode) and the history dict. Writes config.json, the checkpoint,
    model.safetensors, history.json, and reconstructions/loss-curve PNGs into `run_dir`. The
    caller's thread count and global RNG are left as they were.

    loss_fn: a loss to train with in place of `vae_loss` (notebook 01's exercise), called as
    loss_fn(x, recon, posterior, lpips=, perceptual_weight=, kl_weight=) -> (total, terms) with
    terms {"recon", "kl"} (+ "lpips" when perceptual_weight > 0), floats or 0-d tensors. It has
    no recon_loss or perceptual_batch option, so it needs recon="l1" and perceptual_batch 0 (or
    the batch size). Not recorded in config.json: resume a run with the loss it started with.

    watch(step, vae), at each step of watch_at (0: before the first step): sees the VAE in eval
    mode under no_grad (train.call_watch); the run's result is the same with and without it. A
    resumed run watches the steps after its checkpoint only. Not recorded in config.json.
    """
    check_config(cfg)  # e.g. a negative adversarial_weight: refused, not trained without D
    watch_at = check_watch(watch, watch_at, cfg.steps)
    if loss_fn is not None:
        check_loss_fn(cfg)
    if world is None:  # a World from setup_world has a checked device already
        world = World(device=check_device(device))  # a device this machine lacks: one clear error
    run_dir = Path(run_dir)
    # one writer per folder: a second run, or a --resume of this one, is refused until it ends;
    # inside global_torch_state the initial weights come from cfg.seed
    lock = run_lock(run_dir, resume=resume, is_main=world.is_main)
    with lock, global_torch_state(cfg.seed, num_threads=cfg.num_threads, device=world.device):
        data = data if data is not None else twemoji("train", size=cfg.size)
        check_image_size(cfg.size, data.images, 2 ** (len(cfg.vae.channel_mult) - 1), what="VAE")
        check_batch_size(cfg.batch_size, len(data), "images")
        inputs = {"task": "vae", "data": dataset_fingerprint(data)}
        prepare_run_dir(run_dir, run_config(cfg, inputs), resume=resume, is_main=world.is_main)
        vae = VAE(cfg.vae).to(
            world.device
        )  # initial weights from the global RNG, seeded by cfg.seed
        if cfg.init_from:
            init_vae(vae, cfg.init_from)
        model = wrap(vae, world)
        # with the adversarial term, the checkpoint and the optimizer hold the discriminator too (its
        # own Adam betas, as in Taming): a resumed run continues both players exactly
        saved: torch.nn.Module = vae
        groups = [{"params": list(vae.parameters()), "betas": (0.9, 0.99)}]
        disc = None
        if cfg.adversarial_weight > 0:
            if world.size > 1:
                raise ValueError(
                    "adversarial_weight > 0 needs a single process (the discriminator is not "
                    "synchronised across ranks); run it without torchrun"
                )
            disc = PatchDiscriminator(cfg.disc).to(world.device)
            saved = torch.nn.ModuleDict({"vae": vae, "disc": disc})
            groups.append({"params": list(disc.parameters()), "betas": (0.5, 0.9)})
        lpips = None
        if cfg.perceptual_weight > 0:
            from ldm_course.perceptual import LPIPS

            lpips = LPIPS(net=cfg.perceptual_net, check_range=False)  # recons overshoot early
            lpips = lpips.to(world.device)
        if (cfg.freeze_encoder_at or not cfg.train_encoder) and world.size > 1:
            raise ValueError(
                "freeze_encoder_at needs a single process (DDP expects every parameter to "
                "receive a gradient); set freeze_encoder_at=0 for multi-GPU runs"
            )
        images = data.images
        preview = images[:: max(1, len(images) // 8)][:8].to(world.device)  # fixed images to watch
        step_fn = partial(
            vae_step,
            vae=vae,
            model=model,
            images=images,
            lpips=lpips,
            disc=disc,
            cfg=cfg,
            world=world,
            loss_fn=loss_fn,
        )
        loop = Loop(
            run_dir=run_dir,
            cfg=cfg,
            inputs=inputs,
            model=saved,
            optimizer=torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.0),
            step_fn=step_fn,
            artifacts=partial(write_reconstructions, vae=vae, preview=preview, run_dir=run_dir),
            export=partial(save_vae, vae=vae),
            world=world,
            progress=progress,
            watch_at=watch_at,
        )
        if watch is not None:
            loop.watch = partial(call_watch, fn=watch, model=vae, trained=vae)
        history = fit(loop, resume=resume)
        return vae.eval(), history
