"""Exercise checks for the notebooks.

A check runs the learner's function and the package's reference on several seeded random inputs
and prints one line: passed, or what differs (shape, dtype, largest error, the input that broke it).
An exercise left as `raise NotImplementedError` prints "not attempted yet" and never raises, so a
notebook runs top to bottom; `result.use(learner_fn, reference_fn)` picks what to carry on with.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ldm_course.discriminator import hinge_d_loss
from ldm_course.perceptual import normalize_channels
from ldm_course.samplers import ddim_step
from ldm_course.schedules import make_schedule, q_sample
from ldm_course.vae import DiagonalGaussian


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "passed", "failed" or "not attempted"
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def use(self, learner_fn: Callable, reference_fn: Callable) -> Callable:
        """The learner's function when it passed, otherwise the reference (so later cells still work)."""
        return learner_fn if self.passed else reference_fn

    def __bool__(self) -> bool:
        return self.passed


def _describe(inputs: dict) -> str:
    parts = []
    for k, v in inputs.items():
        if torch.is_tensor(v):
            parts.append(
                f"{k}: {v.dtype} {tuple(v.shape)}" if v.numel() > 1 else f"{k}={v.item():.4g}"
            )
        else:
            parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def _compare(got, expected, *, atol: float, rtol: float) -> str | None:
    """None if equal within tolerance, else what differs."""
    if not torch.is_tensor(expected):
        expected = torch.as_tensor(expected, dtype=torch.float64)
    if not torch.is_tensor(got):
        try:
            got = torch.as_tensor(got, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return f"returned a {type(got).__name__}, expected a tensor of shape {tuple(expected.shape)}"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.is_floating_point() != expected.is_floating_point():
        return f"dtype {got.dtype}, expected a {expected.dtype} tensor"
    err = (got.detach().double() - expected.detach().double()).abs()
    bad = err > atol + rtol * expected.detach().double().abs()
    if bad.any() or not torch.isfinite(got).all():
        return (
            f"largest error {err.max().item():.3g} (tolerance {atol:g} + {rtol:g}*|expected|) at index {tuple(int(i) for i in torch.nonzero(bad)[0])}"
            if bad.any()
            else "non-finite values"
        )
    return None


def check_function(
    name: str,
    learner_fn: Callable,
    reference_fn: Callable,
    make_inputs: Callable[[torch.Generator], dict],
    *,
    cases: int = 3,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    quiet: bool = False,
) -> CheckResult:
    """Compare learner_fn(**inputs) with reference_fn(**inputs) on `cases` seeded inputs."""
    worst = 0.0
    for case in range(cases):
        inputs = make_inputs(torch.Generator().manual_seed(seed + case))
        expected = reference_fn(**inputs)
        try:
            got = learner_fn(**inputs)
        except NotImplementedError:
            return _report(
                quiet,
                CheckResult(
                    name,
                    "not attempted",
                    f"⏳ {name}: not attempted yet; the notebook carries on with ldm_course's reference",
                ),
            )
        except Exception as err:  # a learner's bug is reported, never raised
            return _report(
                quiet,
                CheckResult(
                    name,
                    "failed",
                    f"❌ {name}: raised {type(err).__name__}: {err} on case {case + 1} ({_describe(inputs)})",
                ),
            )
        problem = _compare(got, expected, atol=atol, rtol=rtol)
        if problem:
            return _report(
                quiet,
                CheckResult(
                    name, "failed", f"❌ {name}: {problem} on case {case + 1} ({_describe(inputs)})"
                ),
            )
        e = torch.as_tensor(expected, dtype=torch.float64)
        worst = max(worst, (torch.as_tensor(got, dtype=torch.float64) - e).abs().max().item())
    return _report(
        quiet,
        CheckResult(
            name, "passed", f"✅ {name}: passed ({cases} seeded cases, largest error {worst:.1e})"
        ),
    )


def _report(quiet: bool, result: CheckResult) -> CheckResult:
    if not quiet:
        print(result.message)
    return result


def _latent_inputs(gen: torch.Generator) -> dict:
    b = int(torch.randint(1, 5, (1,), generator=gen))
    shape = (b, 4, 8, 8)
    return {
        "mean": torch.randn(shape, generator=gen),
        "logvar": torch.randn(shape, generator=gen).clamp(-4, 2),
    }


# ---- reference solutions, one per exercise (each recomputes through the package's own code) ----


def reference_reparameterize(mean, logvar, eps):
    return DiagonalGaussian(mean, logvar).mean + DiagonalGaussian(mean, logvar).std * eps


def reference_kl(mean, logvar):
    return DiagonalGaussian(mean, logvar).kl()


def reference_lpips_distance(features_x, features_y, head_weights):
    total = 0
    for fx, fy, w in zip(features_x, features_y, head_weights, strict=True):
        d = (normalize_channels(fx) - normalize_channels(fy)) ** 2  # (B, C, H, W)
        total = total + torch.nn.functional.conv2d(d, w).mean(dim=(1, 2, 3))  # (B,)
    return total


def reference_scale_factor(latents):
    return torch.as_tensor(1.0 / latents.double().std().item())


def reference_q_sample(x_0, t, noise, alpha_bar):
    from ldm_course.schedules import NoiseSchedule

    betas = 1 - alpha_bar / torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]])
    schedule = NoiseSchedule(betas, 1 - betas, alpha_bar, "given", len(alpha_bar))
    return q_sample(x_0, t, noise, schedule)


def reference_ddim_step(x_t, eps, t, t_prev, alpha_bar):
    from ldm_course.schedules import NoiseSchedule

    betas = 1 - alpha_bar / torch.cat([torch.ones(1, dtype=alpha_bar.dtype), alpha_bar[:-1]])
    return ddim_step(
        x_t, eps, t, t_prev, NoiseSchedule(betas, 1 - betas, alpha_bar, "given", len(alpha_bar))
    )


def reference_cfg(eps_cond, eps_uncond, guidance_scale):
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def reference_slerp(z_0, z_1, alpha):
    from ldm_course.latents import slerp

    return slerp(z_0, z_1, alpha)


# ---- the checks the notebooks call ----


def check_reparameterize(fn: Callable) -> CheckResult:
    """fn(mean, logvar, eps) -> z = mean + exp(logvar / 2) * eps."""

    def inputs(gen):
        d = _latent_inputs(gen)
        return {**d, "eps": torch.randn(d["mean"].shape, generator=gen)}

    return check_function("reparameterize", fn, reference_reparameterize, inputs)


def check_kl(fn: Callable) -> CheckResult:
    """fn(mean, logvar) -> KL(N(mean, exp(logvar)) || N(0, I)) summed over latent dims, shape (B,)."""
    return check_function("kl_divergence", fn, reference_kl, _latent_inputs, rtol=1e-4, atol=1e-3)


def check_lpips_distance(fn: Callable) -> CheckResult:
    """fn(features_x, features_y, head_weights) -> (B,): sum over layers of the spatial mean of
    w_l . (normalised f_x - normalised f_y)^2 (LPIPS eq. 1)."""

    def inputs(gen):
        widths = (8, 16, 32)
        fx = [
            torch.relu(torch.randn(2, c, 16 // 2**i, 16 // 2**i, generator=gen))
            for i, c in enumerate(widths)
        ]
        fy = [torch.relu(torch.randn(f.shape, generator=gen)) for f in fx]
        heads = [torch.rand(1, c, 1, 1, generator=gen) for c in widths]
        return {"features_x": fx, "features_y": fy, "head_weights": heads}

    return check_function("lpips_distance", fn, reference_lpips_distance, inputs)


def check_scale_factor(fn: Callable) -> CheckResult:
    """fn(latents (B, C, h, w)) -> 1 / std over all values, a float or 0-d tensor."""

    def inputs(gen):
        std = float(torch.rand(1, generator=gen)) * 8 + 0.5
        return {
            "latents": std * torch.randn(64, 4, 8, 8, generator=gen)
            + torch.randn(1, 4, 1, 1, generator=gen)
        }

    return check_function("scale_factor", fn, reference_scale_factor, inputs, rtol=1e-4, atol=1e-6)


def _schedule_inputs(gen):
    return make_schedule("linear", 1000).alpha_bar


def check_q_sample(fn: Callable) -> CheckResult:
    """fn(x_0, t, noise, alpha_bar) -> sqrt(alpha_bar[t]) x_0 + sqrt(1 - alpha_bar[t]) noise, t (B,)."""

    def inputs(gen):
        x_0 = torch.randn(3, 4, 8, 8, generator=gen)
        return {
            "x_0": x_0,
            "t": torch.randint(0, 1000, (3,), generator=gen),
            "noise": torch.randn(x_0.shape, generator=gen),
            "alpha_bar": _schedule_inputs(gen),
        }

    return check_function("q_sample", fn, reference_q_sample, inputs)


def check_ddim_step(fn: Callable) -> CheckResult:
    """fn(x_t, eps, t, t_prev, alpha_bar) -> x_{t_prev} by DDIM eq. 12 with eta = 0 (t_prev = -1: alpha_bar = 1)."""

    def inputs(gen):
        x_t = torch.randn(2, 4, 8, 8, generator=gen)
        t = int(torch.randint(1, 1000, (1,), generator=gen))
        t_prev = int(torch.randint(-1, t, (1,), generator=gen))
        return {
            "x_t": x_t,
            "eps": torch.randn(x_t.shape, generator=gen),
            "t": t,
            "t_prev": t_prev,
            "alpha_bar": _schedule_inputs(gen),
        }

    return check_function("ddim_step", fn, reference_ddim_step, inputs, cases=4)


def check_cfg(fn: Callable) -> CheckResult:
    """fn(eps_cond, eps_uncond, guidance_scale) -> eps_uncond + w (eps_cond - eps_uncond)."""

    def inputs(gen):
        e = torch.randn(2, 2, 4, 8, 8, generator=gen)
        return {
            "eps_cond": e[0],
            "eps_uncond": e[1],
            "guidance_scale": float(torch.rand(1, generator=gen) * 7),
        }

    return check_function("classifier_free_guidance", fn, reference_cfg, inputs)


def check_slerp(fn: Callable) -> CheckResult:
    """fn(z_0, z_1, alpha) -> spherical interpolation per item, alpha a float in [0, 1]."""

    def inputs(gen):
        z = torch.randn(2, 3, 4, 8, 8, generator=gen)
        return {"z_0": z[0], "z_1": z[1], "alpha": float(torch.rand(1, generator=gen))}

    return check_function("slerp", fn, reference_slerp, inputs)


def reference_normalize_channels(features):
    return normalize_channels(features)


def reference_hinge_d_loss(logits_real, logits_fake):
    return hinge_d_loss(logits_real, logits_fake)


def reference_latent_snr(alpha_bar, data_std):
    return alpha_bar * data_std**2 / (1 - alpha_bar)


def check_normalize_channels(fn: Callable) -> CheckResult:
    """fn(features (B, C, H, W)) -> features / (sqrt(sum over C of features^2) + 1e-10)."""

    def inputs(gen):
        return {"features": torch.relu(torch.randn(2, 16, 6, 6, generator=gen)) * 5}

    return check_function("normalize_channels", fn, reference_normalize_channels, inputs)


def check_latent_snr(fn: Callable) -> CheckResult:
    """fn(alpha_bar (T,), data_std float) -> SNR of q(z_t | z_0) for data of that std:
    alpha_bar_t * data_std^2 / (1 - alpha_bar_t), shape (T,)."""

    def inputs(gen):
        return {
            "alpha_bar": make_schedule("scaled_linear", 1000).alpha_bar,
            "data_std": float(torch.rand(1, generator=gen) * 6 + 0.2),
        }

    return check_function("latent_snr", fn, reference_latent_snr, inputs, rtol=1e-5)


def check_hinge_d_loss(fn: Callable) -> CheckResult:
    """fn(logits_real, logits_fake), each (B, 1, h, w) -> the scalar
    1/2 (mean of max(0, 1 - logits_real) + mean of max(0, 1 + logits_fake))."""

    def inputs(gen):
        # spread wide enough that many logits lie beyond the margins, where max(0, .) matters
        return {
            "logits_real": torch.randn(4, 1, 6, 6, generator=gen) * 2 + 0.5,
            "logits_fake": torch.randn(4, 1, 6, 6, generator=gen) * 2 - 0.5,
        }

    return check_function("hinge_d_loss", fn, reference_hinge_d_loss, inputs)
