"""Frozen dataclasses for every model and training setting, and the CLI presets.

Odd values carry a comment. Presets are plain functions of a name, checked at the boundary.
"""

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from ldm_course.blocks import DownsamplePadding
from ldm_course.infra.limits import check_setting, literal_choices
from ldm_course.infra.precision import Precision

Preset = Literal["cpu-fast", "cpu-full", "gpu"]
PRESETS: tuple[str, ...] = get_args(Preset)


@dataclass(frozen=True)
class VAEConfig:
    """Encoder/decoder widths and depths. The default maps 3x64x64 to 4x8x8 (f = 8, 48x fewer values)."""

    in_channels: int = 3
    latent_channels: int = 4  # as in Stable Diffusion's f=8 autoencoder
    base_channels: int = 16  # narrow at 64x64, where convolutions cost most on a CPU
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)  # len - 1 strided downsamplings: f = 2**3 = 8
    num_res_blocks: int = 1  # ResBlocks per stage (the decoder uses one more, as in LDM)
    norm_groups: int = 8  # GroupNorm groups; must divide every width
    mid_attention: bool = True  # ResBlock - SelfAttention - ResBlock in the middle
    # Two options only Stable Diffusion's autoencoder needs (ldm_course/sd_vae.py); the defaults
    # are the course's own VAE and its shipped checkpoints.
    downsample_padding: DownsamplePadding = "all_sides"  # SD: "right_bottom" (blocks.Downsample)
    post_quant_conv: bool = False  # SD: a 1x1 convolution on z before the decoder's conv_in


@dataclass(frozen=True)
class UNetConfig:
    """Denoising U-Net. Defaults suit 4x8x8 latents: levels at 8x8, 4x4 and 2x2."""

    in_channels: int = 4
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (
        1,
        2,
    )  # level indices (0 = full resolution) with self-attention
    num_heads: int = 4
    num_classes: int | None = None  # class conditioning; index num_classes is the null class (CFG)
    dropout: float = 0.0
    norm_groups: int = 8
    time_embed_mult: int = 4  # time-embedding width = time_embed_mult * base_channels


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PatchGAN discriminator of the adversarial decoder term (discriminator.py)."""

    in_channels: int = 3
    base_channels: int = 32  # pix2pix uses 64; half is plenty for 64x64 emoji on a CPU
    num_layers: int = 3  # strided convolutions; 3 gives each logit a 70x70 receptive field
    norm_groups: int = 8


class TrainSettings:
    """What both training configs share beyond their fields: `amp`, read from `precision`."""

    precision: Precision

    @property
    def amp(self) -> bool:
        """Mixed precision asked for (notebook 05's preset table prints it); the setting is `precision`."""
        return self.precision != "fp32"


@dataclass(frozen=True)
class VAETrainConfig(TrainSettings):
    """Training the autoencoder: reconstruction + perceptual_weight * LPIPS + kl_weight * KL."""

    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    min_lr: float = 5e-5  # cosine decay to this
    warmup_steps: int = 100
    recon: Literal["l1", "l2"] = "l1"
    perceptual_weight: float = 0.2  # 0 trains L1 + KL only
    perceptual_net: Literal["alex", "vgg"] = "alex"
    # LPIPS on this many images of each (random) batch; 0 = all. Saves CPU time.
    perceptual_batch: int = 4
    # Tiny: keeps latents near N(0, I) scale without blurring them (LDM uses 1e-6).
    kl_weight: float = 1e-6
    # KL warm-up (Bowman et al. 2016, sec. 3.1): the weight at step s (from 0) is
    # kl_weight * min(1, (s + 1) / kl_warmup_steps); 0 = the full weight from the first step.
    kl_warmup_steps: int = 0
    # From this step on only the decoder trains (0 = never). The latent space is then fixed, so a
    # diffusion model can train on it while the decoder still improves (as SD's fine-tuned decoders).
    freeze_encoder_at: int = 0
    train_encoder: bool = (
        True  # False: a decoder-only fine-tune (with init_from) on a fixed latent space
    )
    init_from: str = (
        ""  # start from these VAE weights (a run folder or .safetensors) instead of random
    )
    # > 0: add the PatchGAN hinge term, times the adaptive weight (Taming eq. 7); LDM's
    # autoencoders use 0.5. 0 = no discriminator at all.
    adversarial_weight: float = 0.0
    adversarial_start: int = 0  # the decoder's adversarial term enters here; D trains from step 0
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 500  # reconstruction grid + loss curve written next to the run
    checkpoint_every: int = 250
    # > 0: gradients rescaled to this global L2 norm when larger (train.optimizer_update); 0 = off
    max_grad_norm: float = 0.0
    num_threads: int = 0  # 0 = leave torch's default
    # auto: bf16 on GPUs with native bf16, fp16 + gradient scaler on older ones, fp32 on CPU/MPS
    precision: Precision = "fp32"
    vae: VAEConfig = field(default_factory=VAEConfig)


@dataclass(frozen=True)
class LDMTrainConfig(TrainSettings):
    """Training the latent-space U-Net with the epsilon objective (DDPM eq. 14)."""

    steps: int = 6000
    batch_size: int = 64
    lr: float = 4e-4
    min_lr: float = 2e-5
    warmup_steps: int = 200
    ema_decay: float = 0.999
    schedule: Literal["linear", "scaled_linear", "cosine"] = "linear"
    num_train_timesteps: int = 1000
    cond_drop_prob: float = 0.1  # labels replaced by the null class this often (CFG)
    min_snr_gamma: float = 0.0  # > 0: Min-SNR-gamma loss weights (diffusion_loss); 0 = L_simple
    # "image": every training image equally often; "group": every base emoji equally often (its
    # skin-tone variants share its turn), so People & Body's 5.9 images per emoji do not dominate
    sample_by: Literal["image", "group"] = "image"
    # built-in Twemoji only: condition on its 10 categories or its 99 finer subcategories
    labels: Literal["category", "subcategory"] = "category"
    # horizontal-flip augmentation: each step, each latent is drawn from the posterior of the
    # mirror image with probability 1/2, except for images the dataset marks as not mirrorable
    # (Twemoji: letters, digits, flags; TensorImageDataset.mirrorable)
    flip: bool = False
    conditional: bool = True
    # Start from these U-Net weights (a run folder or .safetensors, same architecture and latents)
    # instead of random ones: a second stage with a fresh learning-rate schedule.
    init_from: str = ""
    size: int = 64
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 500
    max_grad_norm: float = 0.0  # see VAETrainConfig.max_grad_norm
    num_threads: int = 0
    precision: Precision = "fp32"  # see VAETrainConfig.precision
    unet: UNetConfig = field(default_factory=UNetConfig)


def vae_preset(name: str) -> VAETrainConfig:
    """cpu-fast: minutes on a 2-core CPU (notebooks). cpu-full: the shipped checkpoint. gpu: Colab."""
    check_preset(name)
    if name == "cpu-fast":
        return VAETrainConfig(
            steps=150,
            batch_size=16,
            warmup_steps=20,
            sample_every=150,
            checkpoint_every=150,
            log_every=10,
            perceptual_weight=0.0,
            vae=VAEConfig(base_channels=8, channel_mult=(1, 2, 4, 8)),
        )
    if name == "cpu-full":
        return VAETrainConfig(freeze_encoder_at=1000)
    return VAETrainConfig(
        steps=20000,
        batch_size=64,
        lr=5e-4,
        precision="auto",
        perceptual_batch=0,
        vae=VAEConfig(base_channels=64, channel_mult=(1, 2, 4, 4), num_res_blocks=2),
    )


def ldm_preset(name: str) -> LDMTrainConfig:
    """Same three presets for the latent diffusion U-Net."""
    check_preset(name)
    if name == "cpu-fast":
        return LDMTrainConfig(
            steps=200,
            batch_size=64,
            warmup_steps=20,
            sample_every=200,
            checkpoint_every=200,
            log_every=10,
            unet=UNetConfig(base_channels=32, num_res_blocks=1),
        )
    if name == "cpu-full":
        # 3.8 M parameters, about 0.5 s per step on one CPU thread: about an hour in all
        return LDMTrainConfig(
            steps=7000, lr=1e-3, warmup_steps=200, unet=UNetConfig(base_channels=48)
        )
    return LDMTrainConfig(
        steps=50000,
        batch_size=256,
        lr=2e-4,
        precision="auto",
        ema_decay=0.9999,
        unet=UNetConfig(base_channels=128, channel_mult=(1, 2, 2)),
    )


def check_preset(name: str) -> None:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def to_dict(cfg: Any) -> dict:
    """Dataclass -> JSON-ready dict (tuples become lists)."""
    out = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = (
            to_dict(v)
            if hasattr(v, "__dataclass_fields__")
            else (list(v) if isinstance(v, tuple) else v)
        )
    return out


def from_dict(cls: type, data: dict) -> Any:
    """Inverse of `to_dict`; unknown keys are an error that names them (a config from another version)."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(
            f"config keys {sorted(unknown)} are not fields of {cls.__name__}; "
            f"the checkpoint comes from a different version of ldm_course"
        )
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if hasattr(default, "__dataclass_fields__"):
            value = from_dict(type(default), value)
        elif isinstance(default, tuple) or isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def override(cfg: Any, assignments: list[str]) -> Any:
    """Apply `key=value` overrides (nested with dots, e.g. `vae.base_channels=64`) to a frozen config."""
    for item in assignments:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value, e.g. steps=500")
        key, raw = item.split("=", 1)
        cfg = _set(cfg, key.split("."), raw, item)
    return cfg


def _set(cfg: Any, path: list[str], raw: str, item: str) -> Any:
    names = {f.name for f in fields(cfg)}
    if path[0] not in names:
        raise ValueError(f"unknown setting {item!r}; {type(cfg).__name__} has {sorted(names)}")
    current = getattr(cfg, path[0])
    if len(path) > 1:
        return replace(cfg, **{path[0]: _set(current, path[1:], raw, item)})
    value = _parse(raw, current, item)
    choices = literal_choices(type(cfg), path[0])  # a Literal field: one of its type's values
    check_setting(path[0], value, label=item.split("=", 1)[0], choices=choices)
    return replace(cfg, **{path[0]: value})


def _parse(raw: str, current: Any, item: str) -> Any:
    try:
        if isinstance(current, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return raw.lower() in ("true", "1")
        if isinstance(current, tuple):
            return tuple(int(v) for v in raw.split(",") if v)
        if current is None:
            return None if raw.lower() == "none" else int(raw)
        return type(current)(raw)
    except ValueError:
        raise ValueError(f"cannot parse {item!r}: expected a value like {current!r}") from None
