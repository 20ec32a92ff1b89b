"""Latent diffusion (Rombach et al. 2022): DDPM training and DDIM/DDPM sampling of a U-Net on
scaled VAE latents, with classifier-free guidance (Ho & Salimans 2022)."""

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldm_course.samplers import ddim_sample, ddpm_sample
from ldm_course.schedules import NoiseSchedule, q_sample
from ldm_course.unet import UNet
from ldm_course.vae import VAE


def diffusion_loss(
    eps_model: Callable[..., torch.Tensor],
    z_0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    schedule: NoiseSchedule,
    y: torch.Tensor | None = None,
    *,
    min_snr_gamma: float = 0.0,
) -> torch.Tensor:
    """L_simple = E || eps - eps_theta(sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2
    (DDPM eq. 14; LDM eq. 2 on latents). z_0, noise: (B, C, h, w); t: (B,) in {0..T-1}.

    min_snr_gamma > 0 weights each sample by min(SNR_t, gamma) / SNR_t (Min-SNR-gamma, Hang et
    al. 2023, eq. 8 for epsilon prediction): since ||eps - eps_hat||^2 = SNR_t ||z_0 - z_0_hat||^2,
    this is the z_0 error weighted by min(SNR_t, gamma), which stops the nearly noise-free steps
    (SNR_t >> gamma) from dominating. 0 keeps L_simple.
    """
    if min_snr_gamma < 0:
        raise ValueError(
            f"min_snr_gamma must be >= 0 (0 = off, the paper uses 5), got {min_snr_gamma}"
        )
    z_t = q_sample(z_0, t, noise, schedule)  # (B, C, h, w)
    pred = eps_model(z_t, t, y)
    if not min_snr_gamma:
        return F.mse_loss(pred, noise)
    snr = schedule.snr.to(noise.device)[t]  # (B,) float64
    weight = (snr.clamp(max=min_snr_gamma) / snr).to(torch.float32)  # (B,), in (0, 1]
    per_sample = F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3))
    return (weight * per_sample).mean()


def guided_eps(
    unet: nn.Module,
    z_t: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6):
        eps = eps(z_t, null) + w * (eps(z_t, y) - eps(z_t, null))
    w = 1 is the conditional model, w = 0 the unconditional one. Both run in one batch of 2B."""
    if y is None or guidance_scale == 1.0:
        return unet(z_t, t, y)
    null = torch.full_like(y, unet.cfg.num_classes)  # (B,)
    eps_cond, eps_uncond = unet(
        torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([y, null])
    ).chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


class LatentDiffusion(nn.Module):
    """VAE + U-Net + schedule + scale_factor (+ the names of the classes it is conditioned on):
    the whole miniature Stable Diffusion."""

    def __init__(
        self,
        vae: VAE,
        unet: UNet,
        schedule: NoiseSchedule,
        scale_factor: float,
        *,
        image_size: int = 64,
        class_names: tuple[str, ...] | list[str] = (),
    ):
        super().__init__()
        self.class_names = tuple(class_names)  # label names, class id -> name (empty: unnamed)
        if image_size % vae.downsample_factor:
            raise ValueError(
                f"image_size={image_size} is not a multiple of the VAE's factor {vae.downsample_factor}"
            )
        self.image_size = image_size
        if not scale_factor > 0:
            raise ValueError(
                f"scale_factor must be positive (1 / std of the latents), got {scale_factor}"
            )
        if unet.cfg.in_channels != vae.cfg.latent_channels:
            raise ValueError(
                f"the U-Net takes {unet.cfg.in_channels} channels but the VAE's latents have "
                f"{vae.cfg.latent_channels}; build the U-Net with in_channels={vae.cfg.latent_channels}"
            )
        self.vae, self.unet, self.schedule, self.scale_factor = (
            vae,
            unet,
            schedule,
            float(scale_factor),
        )
        unet.num_timesteps = schedule.num_steps  # UNet._check: 0 <= t < T

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @torch.no_grad()
    def encode(
        self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ):
        """Images in [-1, 1] -> scaled latents z_0 = scale_factor * z (the posterior mean unless sample)."""
        posterior = self.vae.encode(x)
        z = posterior.sample(generator) if sample else posterior.mode()
        return z * self.scale_factor  # (B, C, h, w)

    @torch.no_grad()
    def decode(self, z_0: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images: D(z_0 / scale_factor), (B, 3, H, W)."""
        return self.vae.decode(
            z_0 / self.scale_factor
        ).contiguous()  # NCHW even for channels_last models

    def training_step(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        generator: torch.Generator,
        cond_drop_prob: float = 0.0,
        min_snr_gamma: float = 0.0,
    ) -> torch.Tensor:
        """The loss of one training step (LDM eq. 2: DDPM eq. 14 on scaled latents); `train_ldm`
        trains the shipped U-Nets with it.

        mean, std: the posterior q(z|x) of the batch's images, (B, C, h, w) each; y: (B,) labels.
        Every random number comes from `generator` (on the CPU), always in this order, so a step
        is a function of its generator's seed and a resumed run repeats it exactly:
          1. z_0 = scale_factor * (mean + std * eps_z)   a fresh sample of q(z|x), eps_z ~ N(0, I)
          2. t ~ U{0, ..., T-1}
          3. eps ~ N(0, I), the noise to predict
          4. labels -> the null class with probability cond_drop_prob (classifier-free guidance)
        The U-Net's dropout masks (unet.dropout > 0) come from torch's global RNG, which
        train_ldm seeds for each step from a copy of `generator` (train_ldm.ldm_step).
        min_snr_gamma: Min-SNR weights (diffusion_loss).
        """
        b = mean.shape[0]
        eps_z = torch.randn(mean.shape, generator=generator)  # (B, C, h, w)
        t = torch.randint(0, self.schedule.num_steps, (b,), generator=generator)  # (B,)
        noise = torch.randn(mean.shape, generator=generator)  # (B, C, h, w)
        drop = torch.rand(b, generator=generator) < cond_drop_prob  # (B,)
        z_0 = (mean + std * eps_z) * self.scale_factor  # (B, C, h, w)
        if y is not None:
            y = torch.where(drop, torch.full_like(y, self.unet.cfg.num_classes), y)  # null class
            y = y.to(self.device)
        z_0, t, noise = (v.to(self.device) for v in (z_0, t, noise))
        return diffusion_loss(
            self.unet, z_0, t, noise, self.schedule, y, min_snr_gamma=min_snr_gamma
        )

    @torch.no_grad()
    def generate(
        self,
        n: int,
        *,
        steps: int = 50,
        eta: float = 0.0,
        guidance_scale: float = 3.0,
        y: torch.Tensor | int | None = None,
        generator: torch.Generator | None = None,
        sampler: Literal["ddim", "ddpm"] = "ddim",
        callback: Callable | None = None,
        progress: bool = True,
        return_latents: bool = False,
    ) -> torch.Tensor:
        """Sample n images in [-1, 1] (clamped): z_T ~ N(0, I) -> sampler -> decode.

        y: class ids (n,) or one int for all; None samples the unconditional model (null class).
        guidance_scale w is ignored when y is None. sampler="ddpm" runs all T steps (steps unused).
        """
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        device = self.device
        if y is not None:
            if self.unet.cfg.num_classes is None:
                raise ValueError("this model is unconditional; pass y=None")
            y = torch.as_tensor(y, device=device).long()
            y = y.expand(n) if y.ndim == 0 else y  # one class for all, or (n,)
            if y.shape != (n,):
                raise ValueError(
                    f"y must be one class id or ({n},) ids, got shape {tuple(y.shape)}"
                )
        h = self.image_size // self.vae.downsample_factor
        shape = (n, self.vae.cfg.latent_channels, h, h)

        def eps_fn(z_t, t):
            return guided_eps(self.unet, z_t, t, y, guidance_scale)

        common = dict(generator=generator, device=device, callback=callback, progress=progress)
        if sampler == "ddim":
            z_0 = ddim_sample(eps_fn, shape, self.schedule, num_steps=steps, eta=eta, **common)
        else:
            z_0 = ddpm_sample(eps_fn, shape, self.schedule, **common)
        if return_latents:
            return z_0
        return self.decode(z_0).clamp(-1, 1)
