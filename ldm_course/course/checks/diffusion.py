"""Checks for notebook 04 (latent diffusion): q_sample, one DDIM step and a whole training step."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ldm_course.course.checks.core import CheckResult, Misconception, case_index, check_function
from ldm_course.course.checks.models import check_device, exact_convolutions, tiny_ldm
from ldm_course.course.checks.probes import SD_SCALE_FACTOR
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.samplers import ddim_step
from ldm_course.schedules import NoiseSchedule, make_schedule, q_sample


def schedule_of(alpha_bar: torch.Tensor) -> NoiseSchedule:
    """The NoiseSchedule whose alpha_bar is the given (T,) float64 tensor."""
    alphas = alpha_bar / torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]])
    return NoiseSchedule(1 - alphas, alphas, alpha_bar, "given", len(alpha_bar))


# ---- q_sample ----


def reference_q_sample(x_0, t, noise, alpha_bar):
    return q_sample(x_0, t, noise, schedule_of(alpha_bar))


def _a(alpha_bar, t, x):
    return alpha_bar[t].to(x.dtype).view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)


SEE_Q = "see the forward process in section 2"

Q_SAMPLE_MISCONCEPTIONS = (
    Misconception(
        "the square roots left out",
        f"x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise: alpha_bar is a variance: {SEE_Q}",
        lambda x_0, t, noise, alpha_bar: (
            _a(alpha_bar, t, x_0) * x_0 + (1 - _a(alpha_bar, t, x_0)) * noise
        ),
    ),
    Misconception(
        "the coefficients swapped",
        f"sqrt(alpha_bar_t) multiplies x_0 (the signal) and sqrt(1 - alpha_bar_t) the noise: {SEE_Q}",
        lambda x_0, t, noise, alpha_bar: (
            (1 - _a(alpha_bar, t, x_0)).sqrt() * x_0 + _a(alpha_bar, t, x_0).sqrt() * noise
        ),
    ),
    Misconception(
        "1 - sqrt(alpha_bar) as the noise coefficient",
        f"the noise coefficient is sqrt(1 - alpha_bar_t), not 1 - sqrt(alpha_bar_t): {SEE_Q}",
        lambda x_0, t, noise, alpha_bar: (
            _a(alpha_bar, t, x_0).sqrt() * x_0 + (1 - _a(alpha_bar, t, x_0).sqrt()) * noise
        ),
    ),
    Misconception(
        "alpha_bar[t - 1]: t off by one",
        f"t counts from 0: x_t uses alpha_bar[t] (t = 0 is already one step of noise): {SEE_Q}",
        lambda x_0, t, noise, alpha_bar: reference_q_sample(
            x_0, t, noise, alpha_bar.roll(1)
        ),  # [t - 1]
    ),
)


def check_q_sample(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(x_0, t, noise, alpha_bar) -> sqrt(alpha_bar[t]) x_0 + sqrt(1 - alpha_bar[t]) noise, t (B,)
    with values in {0, ..., T-1}; every case includes t = 0 and t = T - 1."""

    def inputs(gen):
        x_0 = torch.randn(4, 4, 8, 8, generator=gen)
        t = torch.randint(0, 1000, (4,), generator=gen)
        t[0], t[-1] = 0, 999  # both ends of the schedule in every case
        return {
            "x_0": x_0,
            "t": t,
            "noise": torch.randn(x_0.shape, generator=gen),
            "alpha_bar": make_schedule("linear", 1000).alpha_bar,
        }

    return check_function(
        "q_sample",
        fn,
        reference_q_sample,
        inputs,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=Q_SAMPLE_MISCONCEPTIONS,
    )


# ---- one DDIM step ----


def reference_ddim_step(x_t, eps, t, t_prev, alpha_bar):
    return ddim_step(x_t, eps, t, t_prev, schedule_of(alpha_bar))


def _at(alpha_bar, step):
    return float(alpha_bar[step]) if step >= 0 else 1.0  # alpha_bar before the first step is 1


def _wrong_ddim(
    *, prev=lambda ab, t, t_prev: _at(ab, t_prev), sqrt=True, direction=True, swap=False
):
    """A DDIM step (eq. 12, eta = 0) built like the reference with one piece replaced;
    prev(alpha_bar, t, t_prev) gives alpha_bar_prev."""
    root = (lambda v: v**0.5) if sqrt else (lambda v: v)

    def fn(x_t, eps, t, t_prev, alpha_bar):
        a_t, a_prev = float(alpha_bar[t]), prev(alpha_bar, t, t_prev)
        a_t, a_prev = (a_prev, a_t) if swap else (a_t, a_prev)
        pred_x0 = (x_t - root(1 - a_t) * eps) / root(a_t)  # (B, C, H, W)
        return root(a_prev) * pred_x0 + (root(1 - a_prev) * eps if direction else 0)

    return fn


SEE_DDIM = "see DDIM's update in section 7"

DDIM_MISCONCEPTIONS = (
    Misconception(
        "alpha_bar[-1] at the final step",
        f"at t_prev = -1, alpha_bar[t_prev] wraps to the last entry; the final step goes to alpha_bar_prev = 1: {SEE_DDIM}",
        _wrong_ddim(prev=lambda ab, t, t_prev: float(ab[t_prev])),
    ),
    Misconception(
        "the square roots left out",
        f"alpha_bar is a variance: pred_x0 and x_t_prev use sqrt(alpha_bar) and sqrt(1 - alpha_bar): {SEE_DDIM}",
        _wrong_ddim(sqrt=False),
    ),
    Misconception(
        "alpha_bar[t - 1] instead of alpha_bar[t_prev]",
        f"DDIM jumps from t to t_prev, which may be many steps below t - 1: {SEE_DDIM}",
        _wrong_ddim(prev=lambda ab, t, t_prev: _at(ab, t - 1)),
    ),
    Misconception(
        "the direction pointing to x_t left out",
        f"x_t_prev = sqrt(alpha_bar_prev) pred_x0 + sqrt(1 - alpha_bar_prev) eps: {SEE_DDIM}",
        _wrong_ddim(direction=False),
    ),
    Misconception(
        "t and t_prev swapped",
        f"pred_x0 uses alpha_bar[t] (where x_t is); alpha_bar[t_prev] is where the step lands: {SEE_DDIM}",
        _wrong_ddim(swap=True),
    ),
)

DDIM_CASES = ("random", "final", "adjacent", "last")  # every run includes the step to t_prev = -1


def check_ddim_step(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(x_t, eps, t, t_prev, alpha_bar) -> x_{t_prev} by DDIM eq. 12 with eta = 0; t_prev = -1 is
    the final step, to alpha_bar = 1. Every run includes it: t = 0 -> -1 (the last step of a
    "leading" grid), a large t -> -1, t -> t - 1 and t -> a random t_prev."""

    def inputs(gen):
        kind = DDIM_CASES[case_index(gen)]
        x_t = torch.randn(2, 4, 8, 8, generator=gen)
        t = int(torch.randint(1, 1000, (1,), generator=gen))
        t_prev = {
            "random": int(torch.randint(0, t, (1,), generator=gen)),
            "final": -1,
            "adjacent": t - 1,
            "last": -1,
        }[kind]
        return {
            "x_t": x_t,
            "eps": torch.randn(x_t.shape, generator=gen),
            "t": 0 if kind == "last" else t,
            "t_prev": t_prev,
            "alpha_bar": make_schedule("linear", 1000).alpha_bar,
        }

    return check_function(
        "ddim_step",
        fn,
        reference_ddim_step,
        inputs,
        cases=len(DDIM_CASES),
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=DDIM_MISCONCEPTIONS,
    )


# ---- a whole training step (a build exercise) ----

TRAINING_STEP_CASES = (0.0, 0.5, 1.0)  # cond_drop_prob: never, sometimes, always dropped
SEE_STEP = "see LatentDiffusion.training_step's docstring and section 5"


def reference_training_step(model, mean, std, y, *, generator, cond_drop_prob):
    return model.training_step(mean, std, y, generator=generator, cond_drop_prob=cond_drop_prob)


def _wrong_step(
    *,
    order=("eps_z", "t", "noise", "drop"),
    sample=True,
    scale=True,
    dropout="drop",
    null=None,
    t_from=0,
    t_last=True,
    target="noise",
) -> Callable:
    """A training step built like the reference with one piece replaced (scale: True, False,
    "divide" or "sd", Stable Diffusion's constant; t_last=False: t never reaches T - 1)."""

    def fn(model, mean, std, y, *, generator, cond_drop_prob):
        b, num_steps = mean.shape[0], model.schedule.num_steps
        draw = {
            "eps_z": lambda: torch.randn(mean.shape, generator=generator),
            "t": lambda: torch.randint(
                t_from, num_steps + t_from - (0 if t_last else 1), (b,), generator=generator
            ),
            "noise": lambda: torch.randn(mean.shape, generator=generator),
            "drop": lambda: torch.rand(b, generator=generator) < cond_drop_prob,
        }
        d = {name: draw[name]() for name in order}
        z = mean + std * d["eps_z"] if sample else mean  # (B, C, h, w)
        z_0 = {
            True: z * model.scale_factor,
            False: z,
            "divide": z / model.scale_factor,
            "sd": z * SD_SCALE_FACTOR,
        }[scale]
        if dropout != "none":
            drop = d["drop"] if dropout == "drop" else ~d["drop"]  # (B,)
            null_class = model.unet.cfg.num_classes if null is None else null
            y = torch.where(drop, torch.full_like(y, null_class), y)
        z_0, t, noise, y = (v.to(model.device) for v in (z_0, d["t"], d["noise"], y))
        z_t = q_sample(z_0, t, noise, model.schedule)
        pred = model.unet(z_t, t, y)  # (B, C, h, w)
        return F.mse_loss(pred, z_0 if target == "z_0" else noise)

    return fn


_ORDER = "draw from `generator` in the order eps_z, t, noise, drop, as training_step does"
_NULL = "the null class is model.unet.cfg.num_classes, the extra last row of the label table"
TRAINING_STEP_MISCONCEPTIONS = (
    Misconception(
        "the scale factor forgotten",
        f"the U-Net learns scaled latents z_0 = scale_factor * (mean + std * eps_z): {SEE_STEP}",
        _wrong_step(scale=False),
    ),
    Misconception(
        "a division by the scale factor",
        f"the scale factor multiplies: z_0 = scale_factor * (mean + std * eps_z) (decoding divides by it): {SEE_STEP}",
        _wrong_step(scale="divide"),
    ),
    Misconception(
        "Stable Diffusion's 0.18215 instead of model.scale_factor",
        f"0.18215 belongs to Stable Diffusion's VAE; each model measures its own: z_0 = model.scale_factor * (mean + std * eps_z): {SEE_STEP}",
        _wrong_step(scale="sd"),
    ),
    Misconception(
        "the posterior mean instead of a sample",
        f"z_0 is a fresh sample of q(z|x), mean + std * eps_z, not its mean: {SEE_STEP}",
        _wrong_step(sample=False),
        variants=(_wrong_step(sample=False, order=("t", "noise", "drop")),),  # eps_z not drawn
    ),
    Misconception(
        "the label dropout inverted",
        f"labels become the null class where drop (rand < cond_drop_prob) is True, not False: {SEE_STEP}",
        _wrong_step(dropout="inverted"),
    ),
    Misconception(
        "no label dropout",
        f"with probability cond_drop_prob a label becomes the null class (for guidance): {SEE_STEP}",
        _wrong_step(dropout="none"),
        variants=(_wrong_step(dropout="none", order=("eps_z", "t", "noise")),),  # drop not drawn
    ),
    Misconception(
        "the wrong null class",
        f"{_NULL}: {SEE_STEP}",
        _wrong_step(null=0),
        variants=(_wrong_step(null=-1),),
    ),
    Misconception(
        "t drawn from 1..T",
        f"timesteps are 0, ..., T-1: torch.randint(0, T, (B,), generator=generator): {SEE_STEP}",
        _wrong_step(t_from=1),
    ),
    Misconception(
        "t drawn from 0..T-2",
        f"torch.randint's upper bound is excluded: randint(0, T) gives 0, ..., T-1; randint(0, T - 1) never trains t = T-1: {SEE_STEP}",
        _wrong_step(t_last=False),
    ),
    Misconception(
        "the loss against z_0 instead of the noise",
        f"the U-Net predicts the noise: loss = MSE(noise, unet(z_t, t, y)): {SEE_STEP}",
        _wrong_step(target="z_0"),
    ),
    Misconception(
        "the random draws in another order",
        f"{_ORDER}: {SEE_STEP}",
        _wrong_step(order=("eps_z", "noise", "t", "drop")),  # t and noise swapped
        variants=tuple(
            _wrong_step(order=order)
            for order in (
                ("t", "eps_z", "noise", "drop"),
                ("t", "noise", "eps_z", "drop"),
                ("drop", "eps_z", "t", "noise"),
                ("noise", "t", "eps_z", "drop"),
                ("eps_z", "t", "drop", "noise"),
            )
        ),
    ),
)


def _trains_the_unet(got, inputs) -> str | None:
    if not torch.is_tensor(got) or not got.requires_grad:
        return "the loss carries no gradient (.item(), .detach() or torch.no_grad()?); training backpropagates it"
    params = [p for p in inputs["model"].unet.parameters()]
    grads = torch.autograd.grad(got, params, allow_unused=True)
    if not any(g is not None and g.abs().sum() > 0 for g in grads):
        return "the loss has no gradient with respect to the U-Net's parameters"
    return None


def check_training_step(
    fn: Callable,
    *,
    device: torch.device | str | None = None,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(model, mean, std, y, *, generator, cond_drop_prob) -> the scalar loss of one step:
    draws eps_z, t, noise, drop from `generator` in that order; z_0 = scale_factor * (mean +
    std * eps_z); labels -> null class (model.unet.cfg.num_classes) where drop; loss = MSE(noise,
    unet(q_sample(z_0, t, noise), t, y)). Cases with cond_drop_prob 0, 0.5 and 1.
    device: where the model runs (default: the GPU when there is one, as in the notebook); the
    batch and the generator stay on the CPU, as train_ldm hands them over."""
    model = tiny_ldm(device=check_device(device))  # weights drawn on the CPU, then moved

    def inputs(gen):
        case = case_index(gen)
        b = 6
        return {
            "model": model,
            "mean": torch.randn(b, 4, 4, 4, generator=gen),
            "std": torch.rand(b, 4, 4, 4, generator=gen) * 0.5 + 0.1,
            "y": torch.tensor([1, 2, 0, 2, 1, 1]),
            "generator": torch.Generator().manual_seed(100 + case),
            "cond_drop_prob": TRAINING_STEP_CASES[case],
        }

    with exact_convolutions(model.device):
        return check_function(
            "training_step",
            fn,
            reference_training_step,
            inputs,
            cases=len(TRAINING_STEP_CASES),
            quiet=quiet,
            time_limit=time_limit,
            misconceptions=TRAINING_STEP_MISCONCEPTIONS,
            verify=_trains_the_unet,
        )
