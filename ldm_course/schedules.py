"""Noise schedules: betas, alpha_bar, SNR, and the forward process q(x_t | x_0).

Timestep convention used everywhere in ldm_course: t is an index in {0, ..., T-1}, as in diffusers.
Our index t is the paper's step t + 1, so ``alpha_bar[0] = 1 - beta_1`` is the first noising step
and ``alpha_bar[T-1]`` is the noisiest. "alpha_bar before the first step" (the paper's
alpha_bar_0 = 1) is ``alpha_bar_prev[0] = 1``.

Schedules are computed and stored in float64 on the CPU; ``extract`` casts the values it picks to
the dtype and device of the tensor they multiply, so tiny betas are not rounded away early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

ScheduleKind = Literal["linear", "scaled_linear", "cosine"]
SCHEDULE_KINDS: tuple[str, ...] = get_args(ScheduleKind)

COSINE_S = 0.008  # Nichol & Dhariwal's offset: keeps beta_1 from being vanishingly small
MAX_BETA = 0.999  # clip for the cosine schedule, whose last beta would otherwise be ~1


@dataclass(frozen=True, eq=False)  # eq=False: tensors do not compare to a single bool
class NoiseSchedule:
    """Variances of the forward process q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I).

    alphas = 1 - betas and alpha_bar_t = prod_{s <= t} alphas_s (DDPM, Ho et al. 2020, eq. 4).
    All tensors are float64 of shape (T,), indexed by t in {0, ..., T-1}.
    """

    betas: torch.Tensor  # (T,) beta_t
    alphas: torch.Tensor  # (T,) alpha_t = 1 - beta_t
    alpha_bar: torch.Tensor  # (T,) alpha_bar_t = prod_{s <= t} alpha_s
    kind: str
    num_steps: int  # T

    def __post_init__(self) -> None:
        for name in ("betas", "alphas", "alpha_bar"):
            values = getattr(self, name)
            if values.shape != (self.num_steps,) or values.dtype != torch.float64:
                raise ValueError(
                    f"{name} must be a float64 tensor of shape ({self.num_steps},), "
                    f"got {values.dtype} {tuple(values.shape)}"
                )

    @property
    def alpha_bar_prev(self) -> torch.Tensor:
        """alpha_bar_{t-1}, with alpha_bar before the first step equal to 1. Shape (T,)."""
        one = torch.ones(1, dtype=torch.float64)
        return torch.cat([one, self.alpha_bar[:-1]])  # (1,) + (T-1,) -> (T,)

    @property
    def snr(self) -> torch.Tensor:
        """SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021, eq. 2). Shape (T,)."""
        return self.alpha_bar / (1 - self.alpha_bar)


def make_schedule(
    kind: ScheduleKind,
    num_steps: int = 1000,
    *,
    beta_start: float | None = None,
    beta_end: float | None = None,
) -> NoiseSchedule:
    """Build a NoiseSchedule with T = num_steps steps.

    - "linear": betas = linspace(1e-4, 0.02, T) (DDPM, Ho et al. 2020, section 4).
    - "scaled_linear": betas = linspace(sqrt(0.00085), sqrt(0.012), T) ** 2 (Stable Diffusion,
      Rombach et al. 2022; diffusers' "scaled_linear").
    - "cosine": alpha_bar(t) = f(t) / f(0) with f(t) = cos((t / T + s) / (1 + s) * pi / 2) ** 2,
      s = 0.008, and betas_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, 0.999) (Nichol & Dhariwal
      2021, eq. 17; diffusers' "squaredcos_cap_v2").

    beta_start and beta_end override the end points of the two linear schedules (for
    "scaled_linear" they are betas, not their square roots). Every schedule gives alpha_bar as the
    cumulative product of 1 - betas, so clipping a cosine beta changes alpha_bar accordingly.
    """
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"kind must be one of {SCHEDULE_KINDS}, got {kind!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1, got {num_steps!r}")

    if kind == "cosine":
        if beta_start is not None or beta_end is not None:
            raise ValueError("beta_start and beta_end only apply to 'linear' and 'scaled_linear'")
        betas = _cosine_betas(num_steps)  # (T,)
    else:
        default_start, default_end = (1e-4, 0.02) if kind == "linear" else (0.00085, 0.012)
        beta_start = default_start if beta_start is None else float(beta_start)
        beta_end = default_end if beta_end is None else float(beta_end)
        if not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError(
                f"need 0 < beta_start < beta_end < 1, got beta_start={beta_start}, "
                f"beta_end={beta_end}"
            )
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)  # (T,)
        else:
            # Linear in sqrt(beta): smaller betas early on than "linear" with the same end points.
            root_betas = torch.linspace(
                math.sqrt(beta_start), math.sqrt(beta_end), num_steps, dtype=torch.float64
            )  # (T,)
            betas = root_betas**2  # (T,)

    alphas = 1.0 - betas  # (T,)
    alpha_bar = torch.cumprod(alphas, dim=0)  # (T,)
    return NoiseSchedule(
        betas=betas, alphas=alphas, alpha_bar=alpha_bar, kind=kind, num_steps=num_steps
    )


def _cosine_betas(num_steps: int) -> torch.Tensor:
    """betas_t = min(1 - f(t + 1) / f(t), 0.999) for Nichol & Dhariwal's f (eq. 17). Shape (T,)."""
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps  # (T+1,) t / T in [0, 1]
    f = torch.cos((steps + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2  # (T+1,)
    betas = 1 - f[1:] / f[:-1]  # (T+1,) -> (T,)
    return betas.clamp(max=MAX_BETA)  # (T,)


def _check_timesteps(t: torch.Tensor, num_steps: int, batch_size: int) -> None:
    """Raise a ValueError unless t is a (B,) integer tensor with values in {0, ..., T-1}."""
    if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"t must be an integer (long) tensor, got {t!r}")
    if t.shape != (batch_size,):
        raise ValueError(f"t must have shape ({batch_size},) (one step per sample), got {t.shape}")
    if batch_size > 0 and (t.min() < 0 or t.max() >= num_steps):
        raise ValueError(
            f"t must lie in [0, {num_steps - 1}], got values in [{int(t.min())}, {int(t.max())}]"
        )


def extract(values: torch.Tensor, t: torch.Tensor | int, x: torch.Tensor) -> torch.Tensor:
    """Pick values[t] for each sample and shape it to broadcast against x.

    values is a (T,) schedule tensor (float64, CPU); the result has x's dtype and device. For a
    (B,) tensor t the result is (B, 1, ..., 1) with x.ndim dimensions; for an int t, a scalar.
    """
    values = values.to(dtype=x.dtype).to(x.device)  # (T,); cast before moving: MPS has no float64
    if isinstance(t, int):
        return values[t]  # () a scalar, broadcasts against anything
    picked = values[t.to(x.device)]  # (B,)
    return picked.reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ..., 1)


def q_sample(
    x_0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.

    DDPM (Ho et al. 2020) eq. 4, with the noise eps ~ N(0, I) passed in so the caller controls
    randomness. x_0 and noise are (B, ...); t is a (B,) long tensor with values in {0, ..., T-1}.
    """
    if noise.shape != x_0.shape:
        raise ValueError(f"noise must have shape {tuple(x_0.shape)}, got {tuple(noise.shape)}")
    _check_timesteps(t, schedule.num_steps, x_0.shape[0])
    sqrt_alpha_bar = extract(schedule.alpha_bar.sqrt(), t, x_0)  # (B,) -> (B, 1, 1, 1)
    sqrt_one_minus_alpha_bar = extract((1 - schedule.alpha_bar).sqrt(), t, x_0)  # (B, 1, 1, 1)
    return sqrt_alpha_bar * x_0 + sqrt_one_minus_alpha_bar * noise  # (B, C, H, W)


def predict_x0(
    x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> torch.Tensor:
    """pred_x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t): eq. 4 solved for x_0.

    DDPM (Ho et al. 2020) eq. 4 inverted (DDIM, Song et al. 2021, eq. 9). t is an int
    (same step for the whole batch) or a (B,) long tensor, with values in {0, ..., T-1}.
    """
    if eps.shape != x_t.shape:
        raise ValueError(f"eps must have x_t's shape {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    if isinstance(t, int):
        if not 0 <= t < schedule.num_steps:
            raise ValueError(f"t must lie in [0, {schedule.num_steps - 1}], got {t}")
    else:
        _check_timesteps(t, schedule.num_steps, x_t.shape[0])
    sqrt_alpha_bar = extract(schedule.alpha_bar.sqrt(), t, x_t)  # () or (B, 1, 1, 1)
    sqrt_one_minus_alpha_bar = extract((1 - schedule.alpha_bar).sqrt(), t, x_t)  # same
    return (x_t - sqrt_one_minus_alpha_bar * eps) / sqrt_alpha_bar  # (B, C, H, W)
