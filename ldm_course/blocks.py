"""Building blocks shared by the VAE and the U-Net: ResBlock, self-attention, resampling,
sinusoidal timestep embedding. Shapes are (B, C, H, W) unless a comment says otherwise."""

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018); `groups` must divide `channels`, checked here with a clear message."""
    if channels % groups != 0:
        raise ValueError(f"norm_groups={groups} must divide every width, but not {channels}")
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))); h += Linear(SiLU(t_emb)); h = conv(dropout(SiLU(GN(h)))); return skip(x) + h.

    The time embedding (U-Net only) is added after the first convolution, as in DDPM's Wide ResNet
    blocks. The second convolution starts at zero so each block begins as the identity.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        groups: int,
        temb_dim: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb = nn.Linear(temb_dim, out_channels) if temb_dim else None
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        if self.temb is not None:
            if temb is None:
                raise ValueError("this ResBlock is time-conditioned: pass the time embedding")
            h = h + self.temb(F.silu(temb))[:, :, None, None]  # (B, C_out) -> (B, C_out, 1, 1)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions: softmax(Q K^T / sqrt(d)) V (Vaswani et al.
    2017, eq. 1), with a residual connection. Computed with scaled_dot_product_attention."""

    def __init__(self, channels: int, *, groups: int, num_heads: int = 1):
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide the width {channels}")
        self.num_heads = num_heads
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        q, k, v = rearrange(
            qkv, "b (three n d) h w -> three b n (h w) d", three=3, n=self.num_heads
        )
        out = F.scaled_dot_product_attention(q, k, v)  # (B, n, HW, d)
        out = rearrange(out, "b n (h w) d -> b (n d) h w", h=h, w=w)  # (B, C, H, W)
        return x + self.proj(out)


DownsamplePadding = Literal["all_sides", "right_bottom"]
DOWNSAMPLE_PADDINGS: tuple[str, ...] = get_args(DownsamplePadding)


class Downsample(nn.Module):
    """Strided 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2).

    padding="all_sides" (the course's default) pads one zero pixel on every side. "right_bottom"
    pads one on the right and bottom only, then convolves without padding, as LDM's and Stable
    Diffusion's autoencoder does (diffusers' Downsample2D with padding=0): same output size, but
    each 3x3 window is shifted by half a pixel, so the two are different functions of the input.
    """

    def __init__(self, channels: int, *, padding: DownsamplePadding = "all_sides"):
        super().__init__()
        if padding not in DOWNSAMPLE_PADDINGS:
            raise ValueError(
                f"downsample padding must be one of {DOWNSAMPLE_PADDINGS}, got {padding!r}"
            )
        self.padding = padding
        self.conv = nn.Conv2d(
            channels, channels, 3, stride=2, padding=1 if padding == "all_sides" else 0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == "right_bottom":
            x = F.pad(x, (0, 1, 0, 1))  # (B, C, H, W) -> (B, C, H + 1, W + 1)
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def timestep_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, sec. 3.5; DDPM appendix B):

        emb[:, i]          = cos(t / max_period^(i / (dim/2)))
        emb[:, dim/2 + i]  = sin(t / max_period^(i / (dim/2)))     for i = 0, ..., dim/2 - 1

    t: (B,) timesteps (int or float). Returns (B, dim), float32.
    """
    if dim % 2 != 0:
        raise ValueError(f"timestep embedding width must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (half,)
    args = t.float()[:, None] * freqs[None, :]  # (B, 1) * (1, half) -> (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)
