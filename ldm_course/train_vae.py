"""Train the autoencoder (notebook 01, `ldm-course train-vae`): L1 (or L2) + LPIPS + tiny KL,
optionally + a PatchGAN adversarial term for the decoder (discriminator.py)."""

from pathlib import Path

import torch

from ldm_course.checkpoint import save_tensors
from ldm_course.config import VAETrainConfig, to_dict
from ldm_course.data import TensorImageDataset, twemoji
from ldm_course.discriminator import PatchDiscriminator, adversarial_terms
from ldm_course.distributed import World, wrap
from ldm_course.limits import check_batch_size, check_config
from ldm_course.run_folder import dataset_fingerprint, prepare_run_dir
from ldm_course.train import Loop, batch_indices, fit
from ldm_course.vae import VAE, vae_loss
from ldm_course.viz import plot_history, reconstructions, save_figure


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


def train_vae(
    cfg: VAETrainConfig,
    run_dir: str | Path,
    *,
    data: TensorImageDataset | None = None,
    device: torch.device | str = "cpu",
    resume: bool = False,
    world: World | None = None,
    progress: bool = True,
) -> tuple[VAE, dict]:
    """Train (or resume) a VAE on `data` (default: the built-in Twemoji train split at cfg.size).

    Returns the trained VAE (eval mode) and the history dict. Writes config.json, the checkpoint,
    model.safetensors, history.json, and reconstructions/loss-curve PNGs into `run_dir`.
    """
    check_config(cfg)  # e.g. a negative adversarial_weight: refused, not trained without D
    device = torch.device(device)
    world = world or World(device=device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    data = data if data is not None else twemoji("train", size=cfg.size)
    check_batch_size(cfg.batch_size, len(data), "images")
    config = {"task": "vae", **to_dict(cfg), "data": dataset_fingerprint(data)}
    prepare_run_dir(run_dir, config, resume=resume, is_main=world.is_main)
    torch.manual_seed(cfg.seed)  # the initial weights
    vae = VAE(cfg.vae).to(world.device)
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

        lpips = LPIPS(net=cfg.perceptual_net, check_range=False).to(
            world.device
        )  # recons overshoot early
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.0)
    images = data.images
    preview = images[:: max(1, len(images) // 8)][:8].to(world.device)  # fixed images to watch

    if (cfg.freeze_encoder_at or not cfg.train_encoder) and world.size > 1:
        raise ValueError(
            "freeze_encoder_at needs a single process (DDP expects every parameter to "
            "receive a gradient); set freeze_encoder_at=0 for multi-GPU runs"
        )

    def step_fn(step: int, gen: torch.Generator):
        frozen = not cfg.train_encoder or (cfg.freeze_encoder_at and step >= cfg.freeze_encoder_at)
        vae.encoder.requires_grad_(not frozen)
        idx = batch_indices(step, n=len(images), batch_size=cfg.batch_size, seed=cfg.seed)
        x = images[world.shard(idx)].to(world.device)  # (B / world, 3, S, S)
        latent_shape = (
            cfg.batch_size,
            cfg.vae.latent_channels,
            cfg.size // vae.downsample_factor,
            cfg.size // vae.downsample_factor,
        )
        noise = world.shard(torch.randn(latent_shape, generator=gen)).to(
            world.device
        )  # global draw, own shard
        with torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            recon, posterior = model(x, noise=noise)
            recon = recon.float()
            total, parts = vae_loss(
                x,
                recon,
                posterior,
                lpips=lpips,
                perceptual_weight=cfg.perceptual_weight,
                kl_weight=cfg.kl_weight,
                recon_loss=cfg.recon,
                perceptual_batch=cfg.perceptual_batch,
            )
            if disc is None:
                return total, parts
            weight = cfg.adversarial_weight if step >= cfg.adversarial_start else 0.0
            adv, adv_parts = adversarial_terms(
                disc,
                x,
                recon,
                nll=total,
                last_layer=vae.decoder.conv_out.weight,
                weight=weight,
            )
            # "total" stays the autoencoder's own objective; d_loss is logged beside it
            adv_parts["total"] = parts["total"] + adv_parts["adv_weight"] * adv_parts["g_adv"]
            return total + adv, {**parts, **adv_parts}

    def artifacts(step: int, history: dict) -> None:
        vae.eval()
        with torch.no_grad():
            recon = vae.decode(vae.encode(preview).mode())
        vae.train()
        save_figure(
            reconstructions(preview, recon, title=f"step {step}"),
            Path(run_dir) / "reconstructions.png",
        )
        if history["step"]:
            save_figure(plot_history(history), Path(run_dir) / "loss.png")

    def export(path: Path) -> None:
        save_tensors(path, vae.state_dict(), {"kind": "vae", "config": to_dict(cfg.vae)})

    loop = Loop(
        run_dir=Path(run_dir),
        config=config,
        cfg=cfg,
        model=saved,
        optimizer=opt,
        step_fn=step_fn,
        artifacts=artifacts,
        export=export,
        world=world,
        progress=progress,
    )
    history = fit(loop, resume=resume)
    return vae.eval(), history
