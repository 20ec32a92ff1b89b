"""DDPM and DDIM: one reverse step each, the DDIM timestep grid, and two short sampling loops.

Timestep convention (see schedules.py): t in {0, ..., T-1}; t = 0 is the last denoising step and
lands on x_0. The model is any ``eps_fn(x_t, t_batch) -> eps`` (t_batch a (B,) long tensor); the
samplers never see its weights, so the loop stays visible in the notebooks.

Randomness: every draw takes an optional torch.Generator and happens on the generator's device
before moving to x's device, so one seed gives one sample on any machine. Draws happen exactly
where diffusers' DDPMScheduler / DDIMScheduler draw, so a seeded loop here matches a seeded
diffusers loop.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Literal, get_args

import torch
from tqdm.auto import tqdm

from ldm_course.schedules import NoiseSchedule, predict_x0

Spacing = Literal["leading", "trailing"]
SPACINGS: tuple[str, ...] = get_args(Spacing)

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t_batch) -> eps
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]  # (i, t, x_t, pred_x0)


def _noise_like(
    x: torch.Tensor, generator: torch.Generator | None, noise: torch.Tensor | None
) -> torch.Tensor:
    """The given noise (shape-checked), else eps ~ N(0, I) drawn on the generator's device."""
    if noise is not None:
        if noise.shape != x.shape:
            raise ValueError(f"noise must have shape {tuple(x.shape)}, got {tuple(noise.shape)}")
        return noise
    draw_device = generator.device if generator is not None else "cpu"
    return torch.randn(x.shape, generator=generator, device=draw_device, dtype=x.dtype).to(x.device)


def _as_step(t: int, num_steps: int, *, lowest: int = 0, name: str = "t") -> int:
    """t as a python int in [lowest, num_steps - 1]; 0-d integer tensors (grid entries) pass too."""
    try:
        index = None if isinstance(t, bool) else operator.index(t)
    except TypeError:
        index = None
    if index is None or not lowest <= index < num_steps:
        raise ValueError(f"{name} must be an integer in [{lowest}, {num_steps - 1}], got {t!r}")
    return index


def _check_eta(eta: float) -> None:
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta}")


def ddpm_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    t: int,
    schedule: NoiseSchedule,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One ancestral step x_{t-1} ~ p(x_{t-1} | x_t) = q(x_{t-1} | x_t, pred_x0).

    DDPM (Ho et al. 2020) eqs. 6-7: the posterior q(x_{t-1} | x_t, x_0) = N(mu_tilde, beta_tilde I)
    with x_0 replaced by pred_x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t):
        mu_tilde   = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) * pred_x0
                     + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * x_t
        beta_tilde = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t    ("fixed small" variance)
    t is a python int in {0, ..., T-1}, the same for the whole batch. At t = 0 (alpha_bar_{t-1} = 1)
    the step returns pred_x0 and no noise is added or drawn; otherwise noise is used if given, else
    drawn with the generator.
    """
    t = _as_step(t, schedule.num_steps)
    alpha_t = float(schedule.alphas[t])
    beta_t = float(schedule.betas[t])
    alpha_bar_t = float(schedule.alpha_bar[t])
    alpha_bar_prev = float(schedule.alpha_bar_prev[t])  # 1 at t = 0

    pred_x0 = predict_x0(x_t, eps, t, schedule)  # (B, C, H, W)
    coef_x0 = math.sqrt(alpha_bar_prev) * beta_t / (1 - alpha_bar_t)
    coef_xt = math.sqrt(alpha_t) * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    mean = coef_x0 * pred_x0 + coef_xt * x_t  # (B, C, H, W) mu_tilde, eq. 7
    if t == 0:
        return mean

    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t  # eq. 7
    noise = _noise_like(x_t, generator, noise)  # (B, C, H, W)
    return mean + math.sqrt(beta_tilde) * noise  # (B, C, H, W)


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    t: int,
    t_prev: int,
    schedule: NoiseSchedule,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step from x_t to x_{t_prev} (Song et al. 2021, eq. 12):

        x_{t_prev} = sqrt(alpha_bar_{t_prev}) pred_x0                 "predicted x_0"
                     + sqrt(1 - alpha_bar_{t_prev} - sigma_t^2) eps    "direction pointing to x_t"
                     + sigma_t noise                                   "random noise"
        sigma_t(eta) = eta sqrt((1 - alpha_bar_{t_prev}) / (1 - alpha_bar_t))
                           * sqrt(1 - alpha_bar_t / alpha_bar_{t_prev})      (eq. 16)

    t in {0, ..., T-1} and t_prev in {-1, ..., t-1}; t_prev = -1 is the final step, to
    alpha_bar = 1 (diffusers' set_alpha_to_one). eta = 0 is deterministic DDIM and draws nothing;
    eta = 1 with t_prev = t - 1 is the DDPM posterior. For eta > 0, noise is used if given, else
    drawn with the generator (also at the last step, where sigma_t = 0, as diffusers does).
    """
    t = _as_step(t, schedule.num_steps)
    t_prev = _as_step(t_prev, t, lowest=-1, name="t_prev")
    _check_eta(eta)
    alpha_bar_t = float(schedule.alpha_bar[t])
    alpha_bar_prev = float(schedule.alpha_bar[t_prev]) if t_prev >= 0 else 1.0

    pred_x0 = predict_x0(x_t, eps, t, schedule)  # (B, C, H, W)
    sigma_t = (
        eta
        * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
        * math.sqrt(1 - alpha_bar_t / alpha_bar_prev)
    )
    direction = math.sqrt(1 - alpha_bar_prev - sigma_t**2) * eps  # (B, C, H, W)
    x_prev = math.sqrt(alpha_bar_prev) * pred_x0 + direction  # (B, C, H, W)
    if eta > 0:
        x_prev = x_prev + sigma_t * _noise_like(x_t, generator, noise)  # (B, C, H, W)
    return x_prev


def ddim_timesteps(
    num_train_steps: int, num_steps: int, *, spacing: Spacing = "leading"
) -> torch.Tensor:
    """The num_steps training timesteps DDIM visits, descending, as a (num_steps,) long tensor.

    The spacings of Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are
    Flawed", table 2), as in diffusers' ``DDIMScheduler.set_timesteps(num_steps).timesteps`` with
    steps_offset = 0, for i = 0, ..., num_steps - 1:
    - "leading":  t_i = (num_steps - 1 - i) * (T // num_steps); starts below T-1, ends at 0.
    - "trailing": t_i = round(T - i * T / num_steps) - 1; starts at T-1, so the first step sees
      pure noise, and ends at round(T / num_steps) - 1.
    "leading" equals diffusers for every num_steps. For "trailing", diffusers builds the grid with
    np.arange over float steps, which for some num_steps (e.g. 48, 61 with T = 1000) rounds an
    exact half the other way or yields num_steps + 1 entries; here the formula is used as written.
    """
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(
            f"need 1 <= num_steps <= num_train_steps, got num_steps={num_steps}, "
            f"num_train_steps={num_train_steps}"
        )
    i = torch.arange(num_steps, dtype=torch.float64)  # (n,)
    if spacing == "leading":
        timesteps = i * (num_train_steps // num_steps)  # (n,) ascending from 0
        timesteps = timesteps.flip(0)  # (n,) descending
    else:
        # torch.round rounds halves to even, like numpy's round in diffusers.
        timesteps = torch.round(num_train_steps - i * (num_train_steps / num_steps)) - 1  # (n,)
    return timesteps.long()


def previous_timesteps(timesteps: torch.Tensor) -> torch.Tensor:
    """t_prev for each t of a descending grid: the next entry, and -1 (alpha_bar = 1) at the end."""
    final = torch.full((1,), -1, dtype=timesteps.dtype, device=timesteps.device)
    return torch.cat([timesteps[1:], final])  # (n-1,) + (1,) -> (n,)


def _initial_noise(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
    x_T: torch.Tensor | None,
) -> torch.Tensor:
    """x_T ~ N(0, I) of the given shape, or the given x_T moved to device and dtype."""
    if x_T is not None:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T must have shape {tuple(shape)}, got {tuple(x_T.shape)}")
        return x_T.to(device=device if device is not None else x_T.device, dtype=dtype)
    draw_device = generator.device if generator is not None else "cpu"
    device = device if device is not None else draw_device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


@torch.no_grad()
def ddpm_sample(
    eps_fn: EpsFn,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callback | None = None,
    progress: bool = True,
    x_T: torch.Tensor | None = None,
    step_fn: Callable[..., torch.Tensor] = ddpm_step,
) -> torch.Tensor:
    """Ancestral sampling (DDPM, Ho et al. 2020, algorithm 2): x_T ~ N(0, I), then ddpm_step for
    t = T-1, ..., 0. Returns x_0 of the given shape.

    step_fn(x_t, eps, t, schedule, *, generator) -> x_{t-1} replaces ddpm_step (notebook 04 samples
    with the learner's step).
    ``callback(i, t, x_t, pred_x0)`` is called at every step i = 0..T-1 with the sample *entering*
    the step and its pred_x0. device defaults to x_T's, else the generator's, else the CPU.
    """
    # x_T ~ N(0, I) unless given: (B, C, H, W)
    x = _initial_noise(shape, generator=generator, device=device, dtype=dtype, x_T=x_T)
    steps = range(schedule.num_steps - 1, -1, -1)  # T-1, ..., 0
    for i, t in enumerate(tqdm(steps, desc="DDPM", disable=not progress)):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # (B,)
        eps = eps_fn(x, t_batch)  # (B, C, H, W)
        if callback is not None:
            callback(i, t, x, predict_x0(x, eps, t, schedule))
        x = step_fn(x, eps, t, schedule, generator=generator)  # (B, C, H, W)
    return x


@torch.no_grad()
def ddim_sample(
    eps_fn: EpsFn,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    spacing: Spacing = "leading",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    callback: Callback | None = None,
    progress: bool = True,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12) over num_steps timesteps from ddim_timesteps.
    Returns x_0 of the given shape.

    ``callback(i, t, x_t, pred_x0)`` is called at every step i = 0..num_steps-1 with the sample
    *entering* the step and its pred_x0. device defaults to x_T's, else the generator's, else CPU.
    """
    _check_eta(eta)
    timesteps = ddim_timesteps(schedule.num_steps, num_steps, spacing=spacing)  # (n,)
    prev_timesteps = previous_timesteps(timesteps)  # (n,)
    # x_T ~ N(0, I) unless given: (B, C, H, W)
    x = _initial_noise(shape, generator=generator, device=device, dtype=dtype, x_T=x_T)
    pairs = list(zip(timesteps.tolist(), prev_timesteps.tolist(), strict=True))
    for i, (t, t_prev) in enumerate(tqdm(pairs, desc="DDIM", disable=not progress)):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # (B,)
        eps = eps_fn(x, t_batch)  # (B, C, H, W)
        if callback is not None:
            callback(i, t, x, predict_x0(x, eps, t, schedule))
        x = ddim_step(x, eps, t, t_prev, schedule, eta=eta, generator=generator)  # (B, C, H, W)
    return x
