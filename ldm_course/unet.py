"""The denoising U-Net eps_theta(x_t, t, y) (Ho et al. 2020, appendix B; Ronneberger et al. 2015):
sinusoidal time embedding, time-conditioned ResBlocks, self-attention at low resolution, skip
connections, optional class conditioning with a null class for classifier-free guidance."""

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ldm_course.blocks import (
    Downsample,
    ResBlock,
    SelfAttention,
    Upsample,
    group_norm,
    timestep_embedding,
)
from ldm_course.config import UNetConfig


class UNetLevel(nn.Module):
    """ResBlocks (each optionally followed by attention) at one resolution."""

    def __init__(
        self,
        in_channels: list[int],
        out_channels: int,
        *,
        attention: bool,
        cfg: UNetConfig,
        temb_dim: int,
        res_block: type[nn.Module] = ResBlock,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            res_block(
                c, out_channels, groups=cfg.norm_groups, temb_dim=temb_dim, dropout=cfg.dropout
            )
            for c in in_channels
        )
        self.attns = nn.ModuleList(
            SelfAttention(out_channels, groups=cfg.norm_groups, num_heads=cfg.num_heads)
            if attention
            else nn.Identity()
            for _ in in_channels
        )


class UNet(nn.Module):
    """eps_theta: (x_t (B, C, H, W), t (B,), y (B,) or None) -> predicted noise (B, C, H, W).

    H and W must be multiples of 2**(len(channel_mult) - 1). With `num_classes` set, y = num_classes
    (or y=None) is the null class: the unconditional model used by classifier-free guidance.

    res_block and time_embedding (notebook 04 builds the U-Net with the learner's own) replace
    blocks.ResBlock and blocks.timestep_embedding: res_block(c_in, c_out, *, groups, temb_dim,
    dropout) must make the same parameters, so state_dict keys and checkpoints stay the same;
    time_embedding(t (B,), dim) -> (B, dim).
    """

    def __init__(
        self,
        cfg: UNetConfig = UNetConfig(),
        *,
        res_block: type[nn.Module] = ResBlock,
        time_embedding: Callable[[torch.Tensor, int], torch.Tensor] = timestep_embedding,
    ):
        super().__init__()
        outside = [lv for lv in cfg.attention_levels if lv not in range(len(cfg.channel_mult))]
        if outside:
            raise ValueError(
                f"attention_levels {outside} are not levels of this U-Net (channel_mult "
                f"{cfg.channel_mult} has levels 0..{len(cfg.channel_mult) - 1}); pick levels from that range"
            )
        self.cfg = cfg
        self.time_embedding = time_embedding
        # T of the noise schedule the U-Net serves, for the check 0 <= t < T (set by
        # LatentDiffusion; None: only t >= 0 is checked, as the U-Net alone does not know T)
        self.num_timesteps: int | None = None
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        temb_dim = cfg.time_embed_mult * cfg.base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.base_channels, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim)
        )
        self.class_embed = nn.Embedding(cfg.num_classes + 1, temb_dim) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1)

        # Encoder: remember the width of every activation pushed on the skip stack.
        level_of = partial(UNetLevel, cfg=cfg, temb_dim=temb_dim, res_block=res_block)
        skips, prev = [widths[0]], widths[0]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for level, width in enumerate(widths):
            ins = [prev] + [width] * (cfg.num_res_blocks - 1)
            self.down.append(level_of(ins, width, attention=level in cfg.attention_levels))
            skips += [width] * cfg.num_res_blocks
            last = level == len(widths) - 1
            self.downsample.append(nn.Identity() if last else Downsample(width))
            if not last:
                skips.append(width)
            prev = width

        self.mid1 = res_block(
            prev, prev, groups=cfg.norm_groups, temb_dim=temb_dim, dropout=cfg.dropout
        )
        self.mid_attn = SelfAttention(prev, groups=cfg.norm_groups, num_heads=cfg.num_heads)
        self.mid2 = res_block(
            prev, prev, groups=cfg.norm_groups, temb_dim=temb_dim, dropout=cfg.dropout
        )

        # Decoder: num_res_blocks + 1 blocks per level, each eating one skip.
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            ins = []
            for _ in range(cfg.num_res_blocks + 1):
                ins.append(prev + skips.pop())
                prev = width
            self.up.append(level_of(ins, width, attention=level in cfg.attention_levels))
            self.upsample.append(Upsample(width) if level > 0 else nn.Identity())

        self.norm_out = group_norm(prev, cfg.norm_groups)
        self.conv_out = nn.Conv2d(prev, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # starts by predicting eps = 0
        nn.init.zeros_(self.conv_out.bias)

    @property
    def factor(self) -> int:
        return 2 ** (len(self.cfg.channel_mult) - 1)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | int, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        t = self._check(x, t, y)
        temb = self.time_mlp(
            self.time_embedding(t, self.cfg.base_channels)
        )  # (B,) -> (B, temb_dim)
        if self.class_embed is not None:
            if y is None:
                y = torch.full_like(t, self.cfg.num_classes, dtype=torch.long)  # the null class
            temb = temb + self.class_embed(y)  # (B, temb_dim)

        h = self.conv_in(x)  # (B, w0, H, W)
        skips = [h]
        for level, down in zip(self.down, self.downsample, strict=True):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, temb))
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)  # (B, w, H/2, W/2)
                skips.append(h)

        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)

        for level, up in zip(self.up, self.upsample, strict=True):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = torch.cat([h, skips.pop()], dim=1)  # (B, w + w_skip, h, w)
                h = attn(block(h, temb))
            h = up(h)  # (B, w, 2h, 2w) except at full resolution
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)

    def _check(
        self, x: torch.Tensor, t: torch.Tensor | int, y: torch.Tensor | None
    ) -> torch.Tensor:
        cfg = self.cfg
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x_t must be (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(
                f"input of size {h}x{w} is not a multiple of the U-Net's downsampling "
                f"factor {self.factor}; use a size divisible by {self.factor} or fewer levels"
            )
        checked = not torch.is_tensor(t)  # a Python int is range-checked without a device sync
        t = self._check_timesteps(t, x)
        if y is not None:
            if cfg.num_classes is None:
                raise ValueError("this U-Net is unconditional (num_classes=None); pass y=None")
            if not torch.is_tensor(y) or y.shape != (x.shape[0],) or not _integer(y):
                what = f"{y.dtype} {tuple(y.shape)}" if torch.is_tensor(y) else type(y).__name__
                raise ValueError(
                    f"y must be a ({x.shape[0]},) tensor of integer class ids in "
                    f"[0, {cfg.num_classes}] ({cfg.num_classes} = null class), got {what}; "
                    "pass labels as a long tensor (y.long())"
                )
        self._check_ranges(None if checked else t, y)
        return t

    def _check_timesteps(self, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
        """t as a (B,) integer tensor on x's device. A Python int is range-checked here, where
        that costs nothing; a tensor in _check_ranges."""
        T = self.num_timesteps
        if not torch.is_tensor(t):
            if isinstance(t, bool) or not isinstance(t, int):
                raise ValueError(
                    f"t must be an integer timestep or a tensor of them, got {t!r}; pass int(t)"
                )
            if t < 0 or (T is not None and t >= T):
                raise ValueError(f"t={t} is outside the timesteps [0, {T or 'T'}) of the schedule")
            t = torch.tensor(t, device=x.device)
        elif not _integer(t):
            raise ValueError(
                f"t must hold integer timesteps, got a {t.dtype} tensor; pass t.long() (the "
                "sinusoidal embedding would accept fractions no training step produced)"
            )
        t = t.to(x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])  # () -> (B,)
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}"
            )
        return t

    def _check_ranges(self, t: torch.Tensor | None, y: torch.Tensor | None) -> None:
        """t in [0, T) (T = num_timesteps, when known) and y in [0, num_classes], None: nothing to
        check. One device-to-host transfer for both, so a GPU pays at most one sync per call."""
        T, k = self.num_timesteps, self.cfg.num_classes
        flags = []
        if t is not None:
            flags.append((((t < 0) | (t >= T)) if T is not None else t < 0).any())
        if y is not None:
            flags.append(((y < 0) | (y > k)).any().to(flags[0].device if flags else y.device))
        if not flags:
            return
        bad = torch.stack(flags).tolist()
        if t is not None and bad[0]:
            raise ValueError(
                f"t holds timesteps in [{int(t.min())}, {int(t.max())}], outside the "
                f"[0, {T or 'T'}) of the schedule; draw them with torch.randint(0, T, (B,))"
            )
        if y is not None and bad[-1]:
            raise ValueError(
                f"y must be class ids in [0, {k}] ({k} = null class), got ids from {int(y.min())} "
                f"to {int(y.max())}; use ids of the {k} classes the U-Net was built with"
            )


def _integer(v: torch.Tensor) -> bool:
    return not (v.dtype.is_floating_point or v.dtype.is_complex or v.dtype == torch.bool)
