"""Latent statistics and the scale factor (Rombach et al. 2022, sec. 4.3.2 and appendix G; LDM's
`scale_by_std`): the diffusion model works on z * scale_factor, where scale_factor = 1 / std(z) over
training latents, so its inputs have unit variance like the N(0, I) noise it is mixed with.

Stable Diffusion's 0.18215 (and SDXL's 0.13025) are that number for *their* autoencoders; ours has
its own, measured on our latents. The constants below exist only for comparison.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ldm_course.vae import VAE

SD_SCALE_FACTOR = 0.18215  # Stable Diffusion v1/v2's value, for comparison only
SDXL_SCALE_FACTOR = 0.13025  # SDXL's value, for comparison only


def encoder_fingerprint(vae: VAE, images: torch.Tensor | None = None) -> str:
    """sha256 of the encoder's weights (names, then float32 bytes, in state_dict order): names the
    latent space. A U-Net records it (`encoder_fingerprint`), so it is decoded only with a VAE of
    that encoder (decoders of one encoder, e.g. the shipped two, share the space).

    With `images` (N, 3, H, W), their bytes follow: the fingerprint of the latents themselves
    (q(z|x) of those images), which keys train_ldm's latent cache and init_from's check
    (`latents_fingerprint`)."""
    h = hashlib.sha256()
    for name, tensor in vae.encoder.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    if images is not None:
        h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class LatentStats:
    """Per-channel and global statistics of latents (B, C, h, w)."""

    channel_mean: torch.Tensor  # (C,)
    channel_std: torch.Tensor  # (C,)
    mean: float
    std: float
    count: int  # latents (items) the statistics cover

    @property
    def scale_factor(self) -> float:
        return 1.0 / self.std


def latent_stats(z: torch.Tensor) -> LatentStats:
    """Statistics of a batch of latents (B, C, h, w); std is the unbiased std over all values."""
    if z.ndim != 4:
        raise ValueError(f"latents must be (B, C, h, w), got shape {tuple(z.shape)}")
    z = z.detach().double().contiguous()  # one memory layout, one summation order
    per_channel = z.transpose(0, 1).flatten(1)  # (B, C, h, w) -> (C, B*h*w)
    return LatentStats(
        per_channel.mean(1).float(),
        per_channel.std(1).float(),
        z.mean().item(),
        z.std().item(),
        z.shape[0],
    )


@torch.no_grad()
def encode_images(
    vae: VAE,
    images: torch.Tensor | Iterable,
    *,
    batch_size: int = 128,
    sample: bool = True,
    generator: torch.Generator | None = None,
    scale_factor: float = 1.0,
    progress: bool = False,
) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] (or a loader of (images, labels)) -> latents * scale_factor.

    sample=True draws z ~ q(z|x) (what the diffusion model is trained on); False takes the mean.
    """
    device = next(vae.parameters()).device
    batches = (
        images.split(batch_size)
        if torch.is_tensor(images)
        else (b[0] if isinstance(b, list | tuple) else b for b in images)
    )
    out = []
    for x in tqdm(batches, desc="encode", disable=not progress):
        posterior = vae.encode(x.to(device))
        z = posterior.sample(generator) if sample else posterior.mode()  # (b, C, h, w)
        out.append(z.cpu() * scale_factor)
    return torch.cat(out)  # (N, C, h, w)


@torch.no_grad()
def decode_latents(
    vae: VAE, z_scaled: torch.Tensor, *, scale_factor: float, batch_size: int = 128
) -> torch.Tensor:
    """Scaled latents -> images: x = D(z_scaled / scale_factor). Returns (N, 3, H, W), unclamped."""
    if scale_factor <= 0:
        raise ValueError(f"scale_factor must be positive, got {scale_factor}")
    device = next(vae.parameters()).device
    return torch.cat(
        [vae.decode(z.to(device) / scale_factor).cpu() for z in z_scaled.split(batch_size)]
    )


def estimate_scale_factor(
    source: torch.Tensor | Iterable,
    vae: VAE | None = None,
    *,
    sample: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int = 128,
) -> float:
    """scale_factor = 1 / std(z) (LDM's scale_by_std).

    `source` is either latents (B, C, h, w) (vae=None) or images / a loader to encode with `vae`.
    """
    if vae is None:
        if not torch.is_tensor(source):
            raise ValueError("without a vae, source must be a tensor of latents (B, C, h, w)")
        z = source
    else:
        z = encode_images(vae, source, batch_size=batch_size, sample=sample, generator=generator)
    std = latent_stats(z).std
    if not std > 0:
        raise ValueError(f"latents have std {std}; cannot scale them to unit variance")
    return 1.0 / std


def slerp(z_0: torch.Tensor, z_1: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985), per item over all latent dims:
        slerp = sin((1 - a) theta) / sin(theta) z_0 + sin(a theta) / sin(theta) z_1,
    theta the angle between z_0 and z_1. Gaussian latents keep their norm (~sqrt(D)), which a
    straight line would shrink towards the middle. z_0, z_1: (B, ...); alpha scalar or (B,).

    Convention: (nearly) parallel vectors take the straight line, which is then the same path.
    Opposite vectors (z_1 = -c z_0) and zero vectors have no defined angle or plane (every great
    circle joins two opposite points): a ValueError, not a silent zero or NaN."""
    a = torch.as_tensor(alpha, dtype=z_0.dtype, device=z_0.device).reshape(
        -1, *[1] * (z_0.ndim - 1)
    )
    flat0, flat1 = z_0.flatten(1), z_1.flatten(1)  # (B, D)
    norms = flat0.norm(dim=1) * flat1.norm(dim=1)  # (B,)
    if (norms == 0).any():
        raise ValueError(
            "slerp of a zero vector: the angle to it is undefined; interpolate between non-zero "
            "latents (e.g. Gaussian noise)"
        )
    cos = (flat0 * flat1).sum(1) / norms  # (B,)
    if (cos < -1 + 1e-6).any():
        raise ValueError(
            "slerp between opposite vectors (z_1 = -z_0) is undefined: every great circle joins "
            "them; perturb one of them or interpolate along a straight line"
        )
    theta = torch.arccos(cos.clamp(-1, 1)).reshape(-1, *[1] * (z_0.ndim - 1))  # (B, 1, ..., 1)
    sin = torch.sin(theta)
    near = sin.abs() < 1e-6  # parallel vectors: fall back to the straight line
    w0 = torch.where(
        near, 1 - a, torch.sin((1 - a) * theta) / sin.where(~near, torch.ones_like(sin))
    )
    w1 = torch.where(near, a, torch.sin(a * theta) / sin.where(~near, torch.ones_like(sin)))
    return w0 * z_0 + w1 * z_1
