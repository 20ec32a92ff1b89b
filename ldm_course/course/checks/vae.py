"""Checks for notebook 01 (the VAE): reparameterize, kl_divergence and the whole VAE loss."""

from collections.abc import Callable

import torch

from ldm_course.course.checks.core import (
    CheckResult,
    Misconception,
    _compare,
    case_index,
    check_function,
    keep_rng,
)
from ldm_course.course.checks.models import check_device
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.perceptual import LPIPS
from ldm_course.vae import DiagonalGaussian, vae_loss


def _latent_inputs(gen: torch.Generator) -> dict:
    b = int(torch.randint(2, 5, (1,), generator=gen))  # B >= 2: a batch sum differs from a mean
    shape = (b, 4, 8, 8)
    return {
        "mean": torch.randn(shape, generator=gen),
        "logvar": torch.randn(shape, generator=gen).clamp(-4, 2),
    }


def reference_reparameterize(mean, logvar, eps):
    return DiagonalGaussian(mean, logvar).mean + DiagonalGaussian(mean, logvar).std * eps


def reference_kl(mean, logvar):
    return DiagonalGaussian(mean, logvar).kl()


SEE_REPARAM = "see the reparameterisation equation in section 3"
SEE_KL = "see the KL formula in section 4"

REPARAMETERIZE_MISCONCEPTIONS = (
    Misconception(
        "the variance for the standard deviation",
        f"you used the variance exp(logvar) where the standard deviation exp(logvar / 2) belongs: {SEE_REPARAM}",
        lambda mean, logvar, eps: mean + logvar.exp() * eps,
    ),
    Misconception(
        "logvar used as the standard deviation",
        f"logvar is the log of the variance; the standard deviation is exp(logvar / 2): {SEE_REPARAM}",
        lambda mean, logvar, eps: mean + logvar * eps,
    ),
    Misconception(
        "the square root of logvar as the standard deviation",
        f"sqrt(logvar) is not a standard deviation; undo the log first: exp(logvar / 2): {SEE_REPARAM}",
        lambda mean, logvar, eps: mean + logvar.sqrt() * eps,
    ),
    Misconception(
        "the noise left unscaled",
        f"eps must be multiplied by the standard deviation exp(logvar / 2): {SEE_REPARAM}",
        lambda mean, logvar, eps: mean + eps,
    ),
)

KL_MISCONCEPTIONS = (
    Misconception(
        "the missing 1/2",
        f"KL = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar): {SEE_KL}",
        lambda mean, logvar: (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)),
    ),
    Misconception(
        "the KL sign flipped",
        f"you returned -KL (the ELBO's term is -KL); return KL itself, which is >= 0: {SEE_KL}",
        lambda mean, logvar: -reference_kl(mean, logvar),
    ),
    Misconception(
        "a mean over latent dims instead of a sum",
        f"KL sums over the latent dimensions of each item (shape (B,)), not averages: {SEE_KL}",
        lambda mean, logvar: 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean(dim=(1, 2, 3)),
    ),
    Misconception(
        "the standard deviation where the variance belongs",
        f"the variance term is exp(logvar), not exp(logvar / 2): {SEE_KL}",
        lambda mean, logvar: 0.5 * (mean**2 + (logvar / 2).exp() - 1 - logvar).sum(dim=(1, 2, 3)),
    ),
    Misconception(
        "logvar used as the variance",
        f"logvar is the log of the variance: the variance term is exp(logvar): {SEE_KL}",
        lambda mean, logvar: 0.5 * (mean**2 + logvar - 1 - logvar.exp().log()).sum(dim=(1, 2, 3)),
    ),
    Misconception(
        "the - logvar term left out",
        f"KL = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar) has four terms: {SEE_KL}",
        lambda mean, logvar: 0.5 * (mean**2 + logvar.exp() - 1).sum(dim=(1, 2, 3)),
    ),
)


def check_reparameterize(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(mean, logvar, eps) -> z = mean + exp(logvar / 2) * eps."""

    def inputs(gen):
        d = _latent_inputs(gen)
        return {**d, "eps": torch.randn(d["mean"].shape, generator=gen)}

    return check_function(
        "reparameterize",
        fn,
        reference_reparameterize,
        inputs,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=REPARAMETERIZE_MISCONCEPTIONS,
    )


def check_kl(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(mean, logvar) -> KL(N(mean, exp(logvar)) || N(0, I)) summed over latent dims, shape (B,)."""
    return check_function(
        "kl_divergence",
        fn,
        reference_kl,
        _latent_inputs,
        rtol=1e-4,
        atol=1e-3,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=KL_MISCONCEPTIONS,
    )


# ---- the whole VAE loss (a build exercise: the learner writes the loss of a training step) ----

VAE_LOSS_CASES = (  # (perceptual_weight, kl_weight, batch); large KL weights so KL mistakes show
    (0.0, 0.1, 3),
    (0.5, 0.05, 2),
    (1.0, 0.2, 3),
)
SEE_LOSS = "see the loss in section 5 (ldm_course.vae.vae_loss)"


def reference_vae_loss(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
    total, parts = vae_loss(
        x,
        recon,
        posterior,
        lpips=lpips,
        perceptual_weight=perceptual_weight,
        kl_weight=kl_weight,
        recon_loss="l1",
        perceptual_batch=0,
    )
    return total, {k: parts[k] for k in ("recon", "kl", "lpips") if k in parts}


def _wrong_vae_loss(
    *,
    recon_term=lambda x, r: (x - r).abs().mean(),
    kl_term=lambda p, x: p.kl().mean() / x[0].numel(),
    lpips_term=lambda d: d.mean(),
    combine=lambda rec, lp, kl, pw, kw: rec + pw * lp + kw * kl,
) -> Callable:
    """A VAE loss built like the reference with one piece replaced."""

    def fn(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
        rec, kl = recon_term(x, recon), kl_term(posterior, x)
        lp = lpips_term(lpips(recon, x).flatten()) if perceptual_weight > 0 else torch.zeros(())
        terms = {"recon": rec, "kl": kl} | ({"lpips": lp} if perceptual_weight > 0 else {})
        return combine(rec, lp, kl, perceptual_weight, kl_weight), terms

    return fn


VAE_LOSS_MISCONCEPTIONS = (
    Misconception(
        "the KL not divided by the number of pixel values",
        f"divide KL (summed over latent dims) by C*H*W = x[0].numel(), so kl_weight means the same at every size: {SEE_LOSS}",
        _wrong_vae_loss(kl_term=lambda p, x: p.kl().mean()),
    ),
    Misconception(
        "the KL summed over the batch",
        f"average the per-image KL over the batch (.mean()), as the other terms are: {SEE_LOSS}",
        _wrong_vae_loss(kl_term=lambda p, x: p.kl().sum() / x[0].numel()),
    ),
    Misconception(
        "the missing 1/2 in the KL",
        f"KL = 1/2 sum(mean^2 + var - 1 - logvar), or use posterior.kl(): {SEE_LOSS}",
        _wrong_vae_loss(kl_term=lambda p, x: 2 * p.kl().mean() / x[0].numel()),
    ),
    Misconception(
        "the KL sign flipped",
        f"the loss adds + kl_weight * KL (KL >= 0; the ELBO's -KL becomes +KL in a loss to minimise): {SEE_LOSS}",
        _wrong_vae_loss(kl_term=lambda p, x: -p.kl().mean() / x[0].numel()),
        variants=(_wrong_vae_loss(combine=lambda rec, lp, kl, pw, kw: rec + pw * lp - kw * kl),),
    ),
    Misconception(
        "MSE instead of L1",
        f"the reconstruction term is the mean absolute error |x - recon|, not the squared one: {SEE_LOSS}",
        _wrong_vae_loss(recon_term=lambda x, r: (x - r).pow(2).mean()),
    ),
    Misconception(
        "the weights swapped",
        f"perceptual_weight multiplies LPIPS and kl_weight multiplies KL: {SEE_LOSS}",
        _wrong_vae_loss(combine=lambda rec, lp, kl, pw, kw: rec + kw * lp + pw * kl),
    ),
    Misconception(
        "the weights left out",
        f"total = recon + perceptual_weight * LPIPS + kl_weight * KL: {SEE_LOSS}",
        _wrong_vae_loss(combine=lambda rec, lp, kl, pw, kw: rec + lp + kl),
        variants=(_wrong_vae_loss(combine=lambda rec, lp, kl, pw, kw: rec + pw * lp + kl),),
    ),
    Misconception(
        "the LPIPS summed over the batch",
        f"average the LPIPS distances over the batch (.mean()), as the L1 term is: {SEE_LOSS}",
        _wrong_vae_loss(lpips_term=lambda d: d.sum()),
    ),
)


def _compare_vae_loss(got, expected, *, equal_nan: bool = False) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not isinstance(got[1], dict):
        return f"returned a {type(got).__name__}; return (total, terms) with terms a dict"
    total, terms = got
    problem = _compare(total, expected[0], atol=1e-5, rtol=1e-4, equal_nan=equal_nan)
    if problem:
        return f"total: {problem}"
    for key, value in expected[1].items():
        if key not in terms:
            return f"terms has no {key!r} entry (keys: {sorted(terms)})"
        problem = _compare(terms[key], value, atol=1e-5, rtol=1e-4, equal_nan=equal_nan)
        if problem:
            return f"terms[{key!r}]: {problem}"
    return None


def _carries_gradient(got, inputs) -> str | None:
    total = got[0]
    if not torch.is_tensor(total) or not total.requires_grad:
        return "total carries no gradient (.item(), .detach() or torch.no_grad()?); training backpropagates it"
    (grad,) = torch.autograd.grad(total, inputs["recon"], allow_unused=True)
    if grad is None or not grad.abs().sum() > 0:
        return (
            "total has no gradient with respect to recon; training backpropagates it to the decoder"
        )
    return None


def check_vae_loss(
    fn: Callable,
    *,
    lpips: torch.nn.Module | None = None,
    device: torch.device | str | None = None,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(x, recon, posterior, *, lpips, perceptual_weight, kl_weight) -> (total, terms):
    total = mean |x - recon| + perceptual_weight * mean LPIPS(recon, x) + kl_weight * mean KL / (C H W)
    (a tensor that backpropagates to recon) and terms = {"recon", "lpips" (if perceptual_weight > 0),
    "kl"} of the unweighted terms. x, recon: (B, 3, H, W) in [-1, 1]; posterior a DiagonalGaussian;
    lpips a module, lpips(a, b) -> (B,) distances, or None when perceptual_weight == 0.
    device: where the tensors are (default: the given lpips's device, else the GPU when there is
    one, as in the notebook)."""
    if lpips is None:
        device = check_device(device)
        with keep_rng():  # building the layers draws initial weights from the global RNG
            lpips = LPIPS("alex", "stlpips").to(device)
    elif device is None:
        device = next(iter(lpips.parameters()), torch.empty(0)).device

    def inputs(gen):
        perceptual_weight, kl_weight, b = VAE_LOSS_CASES[case_index(gen)]
        x = torch.rand(b, 3, 32, 32, generator=gen) * 2 - 1
        recon = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
        mean = torch.randn(b, 4, 4, 4, generator=gen)
        logvar = torch.randn(b, 4, 4, 4, generator=gen).clamp(-4, 2)
        x, recon, mean, logvar = (v.to(device) for v in (x, recon, mean, logvar))
        recon.requires_grad_()  # a leaf on the device: the gradient check differentiates by it
        return {
            "x": x,
            "recon": recon,
            "posterior": DiagonalGaussian(mean, logvar),
            "lpips": lpips if perceptual_weight > 0 else None,
            "perceptual_weight": perceptual_weight,
            "kl_weight": kl_weight,
        }

    return check_function(
        "vae_loss",
        fn,
        reference_vae_loss,
        inputs,
        cases=len(VAE_LOSS_CASES),
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=VAE_LOSS_MISCONCEPTIONS,
        compare=_compare_vae_loss,
        verify=_carries_gradient,
    )
