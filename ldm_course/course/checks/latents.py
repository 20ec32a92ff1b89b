"""Checks for notebook 03 (latent scaling): the scale factor and the SNR of noised latents."""

from collections.abc import Callable

import torch

from ldm_course.course.checks.core import CheckResult, Misconception, case_index, check_function
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.schedules import make_schedule

# ---- the scale factor ----


def reference_scale_factor(latents):
    return torch.as_tensor(1.0 / latents.double().std().item())


SEE_SCALE = "see 'Exercise 1: the scale factor' in section 2"

SCALE_FACTOR_MISCONCEPTIONS = (
    Misconception(
        "the std instead of 1 / std",
        f"the factor multiplies the latents to give them unit variance: scale_factor = 1 / std: {SEE_SCALE}",
        lambda latents: latents.double().std(),
    ),
    Misconception(
        "1 / variance instead of 1 / std",
        f"z * c has std c * std(z), so c = 1 / std, not 1 / var: {SEE_SCALE}",
        lambda latents: 1 / latents.double().var(),
    ),
    Misconception(
        "one factor per channel",
        f"Stable Diffusion's factor is one number: 1 / std over all values of all channels: {SEE_SCALE}",
        lambda latents: 1 / latents.double().std(dim=(0, 2, 3)),
        variants=(lambda latents: 1 / latents.double().std(dim=(0, 2, 3), keepdim=True),),
    ),
    Misconception(
        "the mean of per-channel factors",
        f"take one std over all values at once (latents.std()), not an average of per-channel ones: {SEE_SCALE}",
        lambda latents: (1 / latents.double().std(dim=(0, 2, 3))).mean(),
    ),
    Misconception(
        "1 / RMS: the mean not subtracted",
        f"the std subtracts the mean first; sqrt(mean(z^2)) is not the std when the latents are off-centre: {SEE_SCALE}",
        lambda latents: 1 / latents.double().pow(2).mean().sqrt(),
    ),
)


def check_scale_factor(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(latents (B, C, h, w)) -> 1 / std over all values, a float or 0-d tensor."""

    def inputs(gen):
        std = float(torch.rand(1, generator=gen)) * 3 + 0.5
        offsets = torch.tensor([1.5, -0.8, 0.3, 0.0]).view(1, 4, 1, 1) * std  # off-centre channels
        spread = torch.tensor([1.0, 0.5, 2.0, 1.0]).view(1, 4, 1, 1)  # channels of unequal std
        return {"latents": std * spread * torch.randn(64, 4, 8, 8, generator=gen) + offsets}

    return check_function(
        "scale_factor",
        fn,
        reference_scale_factor,
        inputs,
        rtol=1e-4,
        atol=1e-6,
        quiet=quiet,
        time_limit=time_limit,
        number_ok=True,
        misconceptions=SCALE_FACTOR_MISCONCEPTIONS,
    )


# ---- the SNR of noised latents ----


def reference_latent_snr(alpha_bar, data_std):
    return alpha_bar * data_std**2 / (1 - alpha_bar)


SEE_SNR = "see 'Exercise 2: the signal-to-noise ratio' in section 3"

LATENT_SNR_MISCONCEPTIONS = (
    Misconception(
        "data_std where data_std**2 belongs",
        f"SNR is a ratio of variances: the signal's variance is alpha_bar * data_std**2: {SEE_SNR}",
        lambda alpha_bar, data_std: alpha_bar * data_std / (1 - alpha_bar),
    ),
    Misconception(
        "the ratio inverted",
        f"SNR = signal variance / noise variance = alpha_bar * data_std**2 / (1 - alpha_bar): {SEE_SNR}",
        lambda alpha_bar, data_std: (1 - alpha_bar) / (alpha_bar * data_std**2),
    ),
    Misconception(
        "data_std left out",
        f"alpha_bar / (1 - alpha_bar) is the SNR of unit-variance data; these latents have std data_std: {SEE_SNR}",
        lambda alpha_bar, data_std: alpha_bar / (1 - alpha_bar),
    ),
    Misconception(
        "data_std on the noise's side",
        f"data_std scales the signal sqrt(alpha_bar) z_0, not the noise: {SEE_SNR}",
        lambda alpha_bar, data_std: alpha_bar / ((1 - alpha_bar) * data_std**2),
    ),
    Misconception(
        "a ratio of standard deviations",
        f"SNR compares variances, not standard deviations: no square roots: {SEE_SNR}",
        lambda alpha_bar, data_std: (alpha_bar / (1 - alpha_bar)).sqrt() * data_std,
    ),
)

SNR_STDS = (0.4, 2.5, 5.0)  # data_std per case (far from 1, where std and variance coincide)


def check_latent_snr(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(alpha_bar (T,), data_std float) -> SNR of q(z_t | z_0) for data of that std:
    alpha_bar_t * data_std^2 / (1 - alpha_bar_t), shape (T,)."""

    def inputs(gen):
        return {
            "alpha_bar": make_schedule("scaled_linear", 1000).alpha_bar,
            "data_std": SNR_STDS[case_index(gen)] + float(torch.rand(1, generator=gen)) * 0.2,
        }

    return check_function(
        "latent_snr",
        fn,
        reference_latent_snr,
        inputs,
        cases=len(SNR_STDS),
        rtol=1e-5,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=LATENT_SNR_MISCONCEPTIONS,
    )
