"""Which model files the command line's --vae and --ldm name: the shipped ones by name, a run
folder or a .safetensors file; for an LDM without --vae, the VAE its U-Net recorded."""

from pathlib import Path


def vae_path(value: str | None):
    """--vae: 'pretrained' (L1 + LPIPS decoder; also when not given), 'pretrained-adversarial', or
    a run folder / file."""
    from ldm_course.pretrained import shipped_vae_file

    if value in (None, "pretrained"):
        return None
    if value == "pretrained-adversarial":
        return shipped_vae_file("adversarial")
    return value


def ldm_path(value: str):
    """--ldm: 'pretrained' (categories), 'pretrained-subcategory', or a run folder / file."""
    from ldm_course.pretrained import shipped_unet_file

    if value == "pretrained":
        return None
    if value == "pretrained-subcategory":
        return shipped_unet_file("subcategory")
    return value


def ldm_vae(args):
    """The VAE to decode an LDM's latents with: --vae if given, else the one its U-Net recorded
    (a run's --vae at training time), else the shipped one."""
    from ldm_course.pretrained import model_meta

    if args.vae is not None or args.ldm in ("pretrained", "pretrained-subcategory"):
        return vae_path(args.vae)
    recorded = model_meta(ldm_path(args.ldm)).get("vae_source", "given")
    if recorded in ("given", "pretrained", "pretrained-adversarial"):  # given: trained in Python
        return vae_path(None if recorded == "given" else recorded)
    if not Path(recorded).exists():
        raise FileNotFoundError(
            f"--ldm {args.ldm} was trained on the latents of the VAE {recorded!r}, which is not "
            "there; pass --vae with that VAE (a run folder or .safetensors)"
        )
    return recorded
