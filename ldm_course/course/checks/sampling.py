"""Checks for notebook 05 (end to end): the guidance combination, slerp and the whole sampling loop."""

from collections.abc import Callable

import torch

from ldm_course.course.checks.core import (
    CheckResult,
    Misconception,
    _compare,
    case_index,
    check_function,
    evaluate,
)
from ldm_course.course.checks.models import check_device, exact_convolutions, tiny_ldm
from ldm_course.course.checks.probes import SD_SCALE_FACTOR
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.diffusion import guided_eps
from ldm_course.latents import slerp
from ldm_course.samplers import ddim_sample, ddim_step, ddim_timesteps, previous_timesteps

# ---- classifier-free guidance ----


def reference_cfg(eps_cond, eps_uncond, guidance_scale):
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


SEE_CFG = "see the guidance equation in section 2"

CFG_MISCONCEPTIONS = (
    Misconception(
        "guidance built around the conditional prediction",
        f"start from the unconditional eps and move w times the difference: eps_uncond + w (eps_cond - eps_uncond) (w = 1 is the conditional model): {SEE_CFG}",
        lambda eps_cond, eps_uncond, guidance_scale: (
            eps_cond + guidance_scale * (eps_cond - eps_uncond)
        ),
    ),
    Misconception(
        "eps_cond and eps_uncond swapped",
        f"the difference points from the unconditional to the conditional prediction, eps_cond - eps_uncond: {SEE_CFG}",
        lambda eps_cond, eps_uncond, guidance_scale: (
            eps_cond + guidance_scale * (eps_uncond - eps_cond)
        ),
    ),
    Misconception(
        "a weighted sum instead of an extrapolation",
        f"guidance extrapolates past eps_cond: eps_uncond + w (eps_cond - eps_uncond), not w eps_cond + eps_uncond: {SEE_CFG}",
        lambda eps_cond, eps_uncond, guidance_scale: guidance_scale * eps_cond + eps_uncond,
    ),
)


def check_cfg(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(eps_cond, eps_uncond, guidance_scale) -> eps_uncond + w (eps_cond - eps_uncond)."""

    def inputs(gen):
        e = torch.randn(2, 2, 4, 8, 8, generator=gen)
        return {
            "eps_cond": e[0],
            "eps_uncond": e[1],
            "guidance_scale": float(torch.rand(1, generator=gen) * 6 + 1.5),  # w > 1: guided
        }

    return check_function(
        "classifier_free_guidance",
        fn,
        reference_cfg,
        inputs,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=CFG_MISCONCEPTIONS,
    )


# ---- slerp ----


def reference_slerp(z_0, z_1, alpha):
    return slerp(z_0, z_1, alpha)


SEE_SLERP = "see the slerp formula in section 3"


def _normalised_slerp(z_0, z_1, alpha):
    z = slerp(z_0, z_1, alpha)
    return z / z.flatten(1).norm(dim=1).view(-1, *[1] * (z.ndim - 1))


def _slerp_without_sin(z_0, z_1, alpha):
    a, b = z_0.flatten(1), z_1.flatten(1)  # (B, D)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))  # (B,)
    theta = cos.clamp(-1, 1).acos().view(-1, *[1] * (z_0.ndim - 1))  # (B, 1, ...)
    return torch.sin((1 - alpha) * theta) * z_0 + torch.sin(alpha * theta) * z_1


SLERP_MISCONCEPTIONS = (
    Misconception(
        "linear interpolation",
        f"(1 - a) z_0 + a z_1 shrinks the norm midway; slerp weighs by sin((1 - a) theta) / sin(theta) and sin(a theta) / sin(theta): {SEE_SLERP}",
        lambda z_0, z_1, alpha: (1 - alpha) * z_0 + alpha * z_1,
    ),
    Misconception(
        "the division by sin(theta) left out",
        f"each weight is divided by sin(theta): sin((1 - a) theta) / sin(theta) and sin(a theta) / sin(theta): {SEE_SLERP}",
        _slerp_without_sin,
    ),
    Misconception(
        "normalised outputs",
        f"slerp keeps the latents' own norms; do not divide the result by its norm: {SEE_SLERP}",
        _normalised_slerp,
    ),
    Misconception(
        "the weights swapped",
        f"alpha = 0 gives z_0: its weight is sin((1 - a) theta) / sin(theta): {SEE_SLERP}",
        lambda z_0, z_1, alpha: slerp(z_1, z_0, alpha),
    ),
    Misconception(
        "one angle for the whole batch",
        f"theta is the angle between z_0[i] and z_1[i], per item (flatten(1)), not over the whole batch: {SEE_SLERP}",
        lambda z_0, z_1, alpha: slerp(z_0.flatten()[None], z_1.flatten()[None], alpha).view(
            z_0.shape
        ),
    ),
)


def check_slerp(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(z_0, z_1, alpha) -> spherical interpolation per item, alpha a float in [0, 1]."""

    def inputs(gen):
        z = torch.randn(2, 3, 4, 8, 8, generator=gen)
        z_1 = z[1] * torch.tensor([1.0, 2.0, 0.5]).view(3, 1, 1, 1)  # items of different norms
        return {"z_0": z[0], "z_1": z_1, "alpha": float(torch.rand(1, generator=gen) * 0.8 + 0.1)}

    return check_function(
        "slerp",
        fn,
        reference_slerp,
        inputs,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=SLERP_MISCONCEPTIONS,
    )


# ---- the whole sampling loop (a build exercise) ----

SAMPLING_CASES = ((4, 1.0), (4, 3.0), (3, 3.0))  # (steps, guidance_scale)
SEE_LOOP = "see 'The sampling loop, with your guidance' in section 2"


def reference_sampling_loop(model, y, z_T, *, steps, guidance_scale):
    z_0 = ddim_sample(
        lambda z, t: guided_eps(model.unet, z, t, y, guidance_scale),
        z_T.shape,
        model.schedule,
        num_steps=steps,
        x_T=z_T,
        progress=False,
    )
    return model.decode(z_0).clamp(-1, 1)  # (B, 3, H, W)


def _loop(
    *, combine=reference_cfg, ascending=False, eps_at="t", decode="scaled", clamp=True, final="one"
) -> Callable:
    """The sampling loop written out (two U-Net calls per step), optionally with one piece wrong
    (final: "one", the step to alpha_bar = 1; "wrapped", to alpha_bar[-1]; "skipped", none)."""

    @torch.no_grad()
    def fn(model, y, z_T, *, steps, guidance_scale):
        timesteps = ddim_timesteps(model.schedule.num_steps, steps)  # (n,) descending
        timesteps = timesteps.flip(0) if ascending else timesteps
        null = torch.full_like(y, model.unet.cfg.num_classes)  # (B,)
        alpha_bar, z = model.schedule.alpha_bar, z_T
        steps_taken = list(
            zip(timesteps.tolist(), previous_timesteps(timesteps).tolist(), strict=True)
        )
        for t, t_prev in steps_taken[:-1] if final == "skipped" else steps_taken:
            at = torch.full((len(y),), t if eps_at == "t" else t_prev, device=z.device)  # (B,)
            eps = combine(model.unet(z, at, y), model.unet(z, at, null), guidance_scale)
            if final != "wrapped":
                z = ddim_step(z, eps, t, t_prev, model.schedule)
            else:  # a hand-rolled step with alpha_bar[t_prev], which wraps at t_prev = -1
                a_t, a_prev = float(alpha_bar[t]), float(alpha_bar[t_prev])
                pred_x0 = (z - (1 - a_t) ** 0.5 * eps) / a_t**0.5
                z = a_prev**0.5 * pred_x0 + (1 - a_prev) ** 0.5 * eps
        images = {
            "scaled": lambda: model.decode(z),
            "unscaled": lambda: model.vae.decode(z),
            "sd": lambda: model.vae.decode(z / SD_SCALE_FACTOR),
        }[decode]()
        return images.clamp(-1, 1) if clamp else images

    return fn


def _ignores_z_T(learner_fn, inputs_for, got) -> bool:
    """The learner's images are the same from another z_T: it draws its own starting noise."""
    inputs = inputs_for()
    other = evaluate(learner_fn, {**inputs, "z_T": inputs["z_T"].flip(0).roll(1, dims=1)})
    return torch.is_tensor(got) and _compare(other, got, atol=1e-5, rtol=1e-4) is None


def _fresh_noise_loop(model, y, z_T, *, steps, guidance_scale):
    return reference_sampling_loop(
        model, y, torch.randn(z_T.shape).to(z_T.device), steps=steps, guidance_scale=guidance_scale
    )


SAMPLING_MISCONCEPTIONS = (
    Misconception(
        "z_T ignored",
        f"start from the given z_T, do not draw fresh noise: the same z_T must give the same images: {SEE_LOOP}",
        _fresh_noise_loop,
        detect=_ignores_z_T,
    ),
    Misconception(
        "timesteps in ascending order",
        f"sampling runs from noise to data: ddim_timesteps is already descending, then previous_timesteps: {SEE_LOOP}",
        _loop(ascending=True),
    ),
    Misconception(
        "guidance built around the conditional prediction",
        f"eps = eps_uncond + w (eps_cond - eps_uncond), as guided_eps: {SEE_LOOP}",
        _loop(combine=lambda c, u, w: c + w * (c - u)),
    ),
    Misconception(
        "eps_cond and eps_uncond swapped",
        f"the conditional prediction uses y, the unconditional one the null class model.unet.cfg.num_classes: {SEE_LOOP}",
        _loop(combine=lambda c, u, w: reference_cfg(u, c, w)),
    ),
    Misconception(
        "no guidance",
        f"the conditional prediction alone ignores guidance_scale; eps = eps_uncond + w (eps_cond - eps_uncond), with eps_uncond from the null class: {SEE_LOOP}",
        _loop(combine=lambda c, u, w: c),
    ),
    Misconception(
        "the last step skipped",
        f"zip(timesteps, previous_timesteps(timesteps)) ends with the step to t_prev = -1 (alpha_bar = 1): run every pair: {SEE_LOOP}",
        _loop(final="skipped"),
    ),
    Misconception(
        "decoding without dividing by the scale factor",
        f"the U-Net works on scaled latents: decode with model.decode(z_0), which divides by model.scale_factor: {SEE_LOOP}",
        _loop(decode="unscaled"),
    ),
    Misconception(
        "Stable Diffusion's 0.18215 instead of model.scale_factor",
        f"0.18215 belongs to Stable Diffusion's VAE; model.decode(z_0) divides by this model's own model.scale_factor: {SEE_LOOP}",
        _loop(decode="sd"),
    ),
    Misconception(
        "no clamp",
        f"the decoder may overshoot; return model.decode(z_0).clamp(-1, 1): {SEE_LOOP}",
        _loop(clamp=False),
    ),
    Misconception(
        "eps evaluated at t_prev",
        f"the U-Net sees z_t at its own timestep t; t_prev is only where the step lands: {SEE_LOOP}",
        _loop(eps_at="t_prev"),
    ),
    Misconception(
        "alpha_bar[-1] at the final step",
        f"alpha_bar[t_prev] wraps at t_prev = -1; the final step goes to alpha_bar_prev = 1 (ddim_step does this): {SEE_LOOP}",
        _loop(final="wrapped"),
    ),
)


def check_sampling_loop(
    fn: Callable,
    *,
    cfg_fn: Callable | None = None,
    device: torch.device | str | None = None,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(model, y, z_T, *, steps, guidance_scale) -> images (B, 3, H, W) in [-1, 1]: DDIM (eta 0)
    over ddim_timesteps / previous_timesteps from the given z_T, classifier-free guidance with the
    null class model.unet.cfg.num_classes, then model.decode(z_0).clamp(-1, 1). Every case ends with
    the step to t_prev = -1. cfg_fn: the guidance combination to check against (default: the
    reference; pass the learner's own when it passed check_cfg). device: where the model, y and
    z_T are (default: the GPU when there is one, as in the notebook)."""
    device = check_device(device)
    model = tiny_ldm(device=device)
    reference = reference_sampling_loop if cfg_fn is None else _loop(combine=cfg_fn)

    def inputs(gen):
        steps, guidance_scale = SAMPLING_CASES[case_index(gen)]
        return {
            "model": model,
            "y": torch.tensor([0, 2], device=device),
            "z_T": torch.randn(2, 4, 4, 4, generator=gen).to(device),
            "steps": steps,
            "guidance_scale": guidance_scale,
        }

    with exact_convolutions(model.device):
        return check_function(
            "sampling_loop",
            fn,
            reference,
            inputs,
            cases=len(SAMPLING_CASES),
            atol=1e-4,
            rtol=1e-3,
            quiet=quiet,
            time_limit=time_limit,
            misconceptions=SAMPLING_MISCONCEPTIONS,
        )
