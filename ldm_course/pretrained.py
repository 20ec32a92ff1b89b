"""The checkpoints that ship with the course (trained with `ldm-course train-* --preset cpu-full`
on the built-in Twemoji train split). Stored in fp16 safetensors inside the package, with a model
card (markdown and JSON) beside each; loading never downloads and never unpickles."""

import json
from pathlib import Path

import torch

from ldm_course.config import UNetConfig, VAEConfig, from_dict
from ldm_course.diffusion import LatentDiffusion
from ldm_course.infra.checkpoint import load_tensors, load_weights, save_tensors
from ldm_course.infra.device import check_device
from ldm_course.schedules import make_schedule
from ldm_course.unet import UNet
from ldm_course.vae import VAE


def pretrained_dir() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("ldm_course"))) / "assets" / "pretrained"


def _model_file(path: str | Path | None, name: str) -> Path:
    """A run folder (its model.safetensors), a .safetensors file, or None for the shipped file."""
    if path is None:
        return pretrained_dir() / f"{name}.safetensors"
    path = Path(path)
    return path / "model.safetensors" if path.is_dir() else path


def _load_model(
    path, kind: str, label: str, model_cls, cfg_cls, device
) -> tuple[torch.nn.Module, dict]:
    """Read `kind` weights and their config from a shipped file, run folder or .safetensors file;
    build the model from that config, frozen, eval mode, channels_last (~25% faster decoding on CPU,
    see benchmarks/results/diffusers.json). A device this machine lacks is one clear error, first."""
    device = check_device(device)
    file = _model_file(path, kind)
    tensors, meta = load_tensors(file)
    if meta.get("kind") != kind:
        raise ValueError(f"{file} holds a {meta.get('kind')!r} checkpoint, not a {label}")
    model = model_cls(from_dict(cfg_cls, meta["config"]))
    load_weights(model, tensors, source=str(file))
    model = model.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
    return model, meta


SHIPPED_VAES = {"lpips": "vae", "adversarial": "vae-adversarial"}
# The same recipe without the perceptual term (perceptual_weight=0): a VAE of its own, with its own
# encoder and latent space, on which no U-Net was trained. Notebook 02 compares it with the default.
SHIPPED_VAE_WITHOUT_LPIPS = "vae-l1"


def load_vae(
    path: str | Path | None = None,
    *,
    decoder: str = "lpips",
    perceptual: bool = True,
    device: torch.device | str = "cpu",
) -> VAE:
    """The shipped VAE (or one from a run folder / file), float32, eval mode, frozen.

    decoder chooses between the two shipped decoders of one encoder (so one latent space, on
    which both shipped U-Nets were trained): "lpips" (L1 + LPIPS, the default) or "adversarial"
    (that decoder fine-tuned with a PatchGAN term as well; notebook 02, section 5).
    perceptual=False loads the shipped VAE trained with L1 + KL only (no LPIPS term), at the same
    budget as the default's first stage: its own encoder, so not for decoding the U-Nets' latents
    (notebook 02, section 4).
    """
    file = shipped_vae_file(decoder, perceptual=perceptual)
    if path is not None and decoder != "lpips":
        raise ValueError(
            f"decoder={decoder!r} chooses a shipped VAE, but a path ({path}) was given too; "
            "drop decoder= to load the file"
        )
    if path is not None and not perceptual:
        raise ValueError(
            f"perceptual=False chooses a shipped VAE, but a path ({path}) was given too; "
            "drop perceptual= to load the file"
        )
    return _load_model(file if path is None else path, "vae", "VAE", VAE, VAEConfig, device)[0]


def shipped_vae_file(decoder: str = "lpips", *, perceptual: bool = True) -> Path:
    """The shipped VAE with the L1 + LPIPS decoder or with the adversarial one (same encoder);
    perceptual=False: the shipped VAE trained without LPIPS (its own encoder, one decoder)."""
    if decoder not in SHIPPED_VAES:
        raise ValueError(f"decoder must be 'lpips' or 'adversarial', got {decoder!r}")
    if not perceptual:
        if decoder != "lpips":
            raise ValueError(
                f"perceptual=False is a VAE of its own with one decoder; decoder={decoder!r} "
                "belongs to the shipped L1 + LPIPS VAE"
            )
        return pretrained_dir() / f"{SHIPPED_VAE_WITHOUT_LPIPS}.safetensors"
    return pretrained_dir() / f"{SHIPPED_VAES[decoder]}.safetensors"


SHIPPED_UNETS = {"category": "unet", "subcategory": "unet-subcategory"}


def shipped_unet_file(labels: str = "category") -> Path:
    """The shipped U-Net conditioned on Twemoji's 10 categories or on its 99 subcategories."""
    if labels not in SHIPPED_UNETS:
        raise ValueError(f"labels must be 'category' or 'subcategory', got {labels!r}")
    return pretrained_dir() / f"{SHIPPED_UNETS[labels]}.safetensors"


def load_unet(
    path: str | Path | None = None,
    *,
    labels: str = "category",
    device: torch.device | str = "cpu",
) -> tuple[UNet, dict]:
    """The shipped U-Net (EMA weights) and its metadata (scale_factor, schedule, class names).

    labels chooses between the shipped U-Nets ("category" or "subcategory"); a path brings its
    own labels, so it cannot be combined with labels="subcategory".
    """
    file = shipped_unet_file(labels)
    if path is not None and labels != "category":
        raise ValueError(
            f"labels={labels!r} chooses a shipped U-Net, but a path ({path}) was given too; "
            "a U-Net file carries its own class names: drop labels="
        )
    return _load_model(file if path is None else path, "unet", "U-Net", UNet, UNetConfig, device)


def load_ldm(
    unet_path: str | Path | None = None,
    vae_path: str | Path | None = None,
    *,
    labels: str = "category",
    decoder: str = "lpips",
    device: torch.device | str = "cpu",
    check_vae: bool = True,
) -> LatentDiffusion:
    """The shipped latent diffusion model: class-conditional on emoji category with classifier-free
    guidance (y=None samples the unconditional model). labels="subcategory" loads the U-Net
    conditioned on the 99 subcategories instead (same VAE); decoder="adversarial" the shipped
    decoder fine-tuned with a PatchGAN term (same encoder, so the same latents). `.scale_factor`
    is the factor measured on the training latents; `.class_names` the label names.
    A VAE whose encoder is not the one the U-Net was trained on is refused (check_vae=False decodes
    with it anyway)."""
    unet, meta = load_unet(unet_path, labels=labels, device=device)
    vae = load_vae(vae_path, decoder=decoder, device=device)
    if check_vae and not (unet_path is None and vae_path is None and decoder == "lpips"):
        check_latent_space(meta, vae, shipped_unet=unet_path is None)
    schedule = make_schedule(meta["schedule"], meta["num_train_timesteps"])
    return LatentDiffusion(
        vae,
        unet,
        schedule,
        meta["scale_factor"],
        image_size=meta["image_size"],
        class_names=meta["class_names"],
    ).eval()


def model_meta(path: str | Path | None, kind: str = "unet") -> dict:
    """The metadata of a model file (run folder, .safetensors, None: shipped) without its tensors."""
    return load_tensors(_model_file(path, kind))[1]


def check_latent_space(meta: dict, vae: VAE, *, shipped_unet: bool = False) -> None:
    """Refuse to decode a U-Net's latents with a VAE of another encoder (the two shipped decoders
    share one). Recorded as `encoder_fingerprint` since it existed; the shipped U-Nets predate it
    and were trained on the shipped encoder. Older run files cannot be checked."""
    from ldm_course.latents import encoder_fingerprint

    expected = meta.get("encoder_fingerprint")
    if expected is None and shipped_unet:
        expected = encoder_fingerprint(load_vae())
    if expected is not None and encoder_fingerprint(vae) != expected:
        raise ValueError(
            f"this U-Net was trained on the latents of another VAE encoder (its VAE: "
            f"{meta.get('vae_source', 'shipped')!r}); pass that VAE with --vae (vae_path), or "
            "--force-vae (check_vae=False) to decode with this one anyway"
        )


def export(
    run_dir: str | Path, name: str, *, out_dir: str | Path | None = None, card: dict | None = None
) -> Path:
    """Copy a run's model.safetensors into the package as fp16 `<name>.safetensors` plus a model card
    `<name>.json` / `<name>.md`. fp16 halves the size; loading converts back to float32."""
    tensors, meta = load_tensors(Path(run_dir) / "model.safetensors")
    out_dir = Path(out_dir) if out_dir else pretrained_dir()
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    save_tensors(out_dir / f"{name}.safetensors", half, meta)
    if card is not None:
        write_card(out_dir / name, {**card, "config": meta.get("config")})
    return out_dir / f"{name}.safetensors"


def write_card(stem: Path, card: dict) -> None:
    """Model card as JSON (for programs) and markdown (for people)."""
    from ldm_course.infra.checkpoint import atomic_write

    atomic_write(
        stem.with_suffix(".json"), lambda p: p.write_text(json.dumps(card, indent=2) + "\n")
    )
    lines = [f"# {card.get('title', stem.name)}", ""]
    for key, value in card.items():
        if key == "title":
            continue
        if isinstance(value, dict | list):
            value = "\n\n```json\n" + json.dumps(value, indent=2) + "\n```"
        lines.append(f"- **{key}**: {value}")
    atomic_write(stem.with_suffix(".md"), lambda p: p.write_text("\n".join(lines) + "\n"))


__all__ = [
    "load_vae",
    "load_unet",
    "load_ldm",
    "model_meta",
    "shipped_vae_file",
    "shipped_unet_file",
    "export",
]
