"""The autoencoder of latent diffusion (Rombach et al. 2022, sec. 3.1; Kingma & Welling 2014):
an encoder to a diagonal Gaussian posterior q(z | x), a decoder p(x | z), and their loss."""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ldm_course.blocks import Downsample, ResBlock, SelfAttention, Upsample, group_norm
from ldm_course.config import VAEConfig


@dataclass
class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))), each (B, C, h, w)."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def __post_init__(self):
        # LDM's clamp: keeps exp() finite early in training without changing sensible values.
        self.logvar = self.logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterisation trick (Kingma & Welling 2014, eq. 10): z = mean + std * eps, eps ~ N(0, I).
        Gradients flow to mean and logvar; the randomness is only in eps."""
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(
            self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype
        )
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) = 1/2 sum(mean^2 + var - 1 - logvar) over latent dims (VAE paper,
        appendix B). Returns (B,)."""
        return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar).sum(dim=(1, 2, 3))


def check_images(x: torch.Tensor, *, channels: int, factor: int, what: str = "images") -> None:
    """Clear errors for the three usual mistakes: channel count, size, value range."""
    if x.ndim != 4:
        raise ValueError(
            f"{what} must be (B, C, H, W), got shape {tuple(x.shape)}; add a batch dim "
            "with x[None] for a single image"
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"{what} have {x.shape[1]} channels, the model expects {channels}; convert "
            "grayscale/RGBA to RGB first (ldm_course.data.load_image does this)"
        )
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(
            f"{what} of size {h}x{w} are not multiples of the downsampling factor "
            f"{factor}; resize or crop to a multiple of {factor} (e.g. 64x64)"
        )
    if x.numel() and x.detach().abs().max() > 1.5:
        raise ValueError(
            f"{what} have values up to {x.detach().abs().max():.3g}, far outside "
            "[-1, 1]; scale [0, 255] images with x / 127.5 - 1 and [0, 1] with 2x - 1"
        )


def check_dtype(x: torch.Tensor, weight: torch.Tensor, what: str) -> None:
    """Input and weights of one float type (autocast mixes them itself): a float64 or half batch
    into a float32 model is one line naming the conversion, not a raw dtype error deep inside."""
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"{what} are {x.dtype} but the model's weights are {weight.dtype}; convert them with "
            f"x.to({weight.dtype}) (or the model with .to({x.dtype}))"
        )


class Encoder(nn.Module):
    """x (B, 3, H, W) -> [mean, logvar] (B, 2 * latent_channels, H/f, W/f)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        g = cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        prev = widths[0]
        for level, width in enumerate(widths):
            stage = nn.Module()
            stage.blocks = nn.ModuleList(
                [
                    ResBlock(prev if i == 0 else width, width, groups=g)
                    for i in range(cfg.num_res_blocks)
                ]
            )
            stage.downsample = (
                Downsample(width, padding=cfg.downsample_padding)
                if level < len(widths) - 1
                else nn.Identity()
            )
            self.down.append(stage)
            prev = width
        self.mid = MidBlock(prev, groups=g, attention=cfg.mid_attention)
        self.norm_out = group_norm(prev, g)
        self.conv_out = nn.Conv2d(prev, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, w0, H, W)
        for stage in self.down:
            for block in stage.blocks:
                h = block(h)
            h = stage.downsample(h)  # (B, w, H/2, W/2) except after the last stage
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 2 * latent_channels, H/f, W/f)


class Decoder(nn.Module):
    """z (B, latent_channels, h, w) -> x (B, 3, f h, f w); mirrors the encoder with one more block per stage."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult][::-1]
        g = cfg.norm_groups
        # Stable Diffusion's 1x1 convolution on z (sd_vae.py); absent from the course's own VAE.
        # It cannot be folded into conv_in exactly: conv_in's zero padding would see its bias.
        self.post_quant_conv = (
            nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
            if cfg.post_quant_conv
            else nn.Identity()
        )
        self.conv_in = nn.Conv2d(cfg.latent_channels, widths[0], 3, padding=1)
        self.mid = MidBlock(widths[0], groups=g, attention=cfg.mid_attention)
        self.up = nn.ModuleList()
        prev = widths[0]
        for level, width in enumerate(widths):
            stage = nn.Module()
            stage.blocks = nn.ModuleList(
                [
                    ResBlock(prev if i == 0 else width, width, groups=g)
                    for i in range(cfg.num_res_blocks + 1)
                ]
            )
            stage.upsample = Upsample(width) if level < len(widths) - 1 else nn.Identity()
            self.up.append(stage)
            prev = width
        self.norm_out = group_norm(prev, g)
        self.conv_out = nn.Conv2d(prev, cfg.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))  # (B, w_top, h, w)
        for stage in self.up:
            for block in stage.blocks:
                h = block(h)
            h = stage.upsample(h)  # (B, w, 2h, 2w) except after the last stage
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, H, W)


class MidBlock(nn.Module):
    """ResBlock - SelfAttention - ResBlock at the lowest resolution."""

    def __init__(self, channels: int, *, groups: int, attention: bool):
        super().__init__()
        self.res1 = ResBlock(channels, channels, groups=groups)
        self.attn = SelfAttention(channels, groups=groups) if attention else nn.Identity()
        self.res2 = ResBlock(channels, channels, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res2(self.attn(self.res1(x)))


class VAE(nn.Module):
    """x in [-1, 1], (B, 3, H, W)  --encode-->  q(z|x) over (B, C_z, H/f, W/f)  --decode-->  x_hat."""

    def __init__(self, cfg: VAEConfig = VAEConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.cfg.channel_mult) - 1)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        check_images(x, channels=self.cfg.in_channels, factor=self.downsample_factor)
        check_dtype(x, self.encoder.conv_in.weight, "images")
        mean, logvar = self.encoder(x).chunk(2, dim=1)  # (B, 2C, h, w) -> 2 x (B, C, h, w)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.cfg.latent_channels:
            raise ValueError(
                f"latents must be (B, {self.cfg.latent_channels}, h, w), got {tuple(z.shape)}"
            )
        check_dtype(z, self.decoder.conv_in.weight, "latents")
        return self.decoder(z)

    def forward(
        self,
        x: torch.Tensor,
        *,
        sample: bool = True,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ):
        """Returns (reconstruction, posterior). sample=False decodes the posterior mean; `noise`
        (B, C, h, w) fixes the reparameterisation eps (z = mean + std * noise)."""
        posterior = self.encode(x)
        if not sample:
            z = posterior.mode()
        elif noise is not None:
            z = posterior.mean + posterior.std * noise
        else:
            z = posterior.sample(generator)
        return self.decode(z), posterior


def vae_loss(
    x: torch.Tensor,
    recon: torch.Tensor,
    posterior: DiagonalGaussian,
    *,
    lpips: nn.Module | None = None,
    perceptual_weight: float = 0.0,
    kl_weight: float = 1e-6,
    recon_loss: Literal["l1", "l2"] = "l1",
    perceptual_batch: int = 0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = |x - x_hat| (or squared) + perceptual_weight * LPIPS(x, x_hat) + kl_weight * KL / (C H W).

    The reconstruction term is a mean over pixels; KL (summed over latent dims per sample) is
    divided by the number of pixel values so that kl_weight means the same at every image size
    (the same balance as LDM's summed losses). With perceptual_batch = k > 0, LPIPS is averaged over
    the first k images only: on a randomly drawn batch that is an unbiased estimate of the batch
    mean at k/B of the cost (LPIPS costs more than the VAE itself on a CPU).
    Returns the total (a scalar to backpropagate) and its parts as floats.
    """
    if recon_loss not in ("l1", "l2"):
        raise ValueError(f"recon_loss must be 'l1' or 'l2', got {recon_loss!r}")
    if perceptual_weight > 0 and lpips is None:
        raise ValueError("perceptual_weight > 0 needs an LPIPS module: pass lpips=LPIPS()")
    diff = (x - recon).abs() if recon_loss == "l1" else (x - recon).pow(2)
    rec = diff.mean()
    kl = posterior.kl().mean() / x[0].numel()
    total = rec + kl_weight * kl
    parts = {"recon": rec.item(), "kl": kl.item()}
    if perceptual_weight > 0:
        k = perceptual_batch or len(x)
        p = lpips(recon[:k], x[:k]).mean()
        total = total + perceptual_weight * p
        parts["lpips"] = p.item()
    parts["total"] = total.item()
    return total, parts
