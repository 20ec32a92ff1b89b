"""Checks for notebook 04's U-Net parts: the sinusoidal time embedding, a time-conditioned
ResBlock (a build exercise: the learner writes the class) and one DDPM ancestral step."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ldm_course.blocks import ResBlock, timestep_embedding
from ldm_course.course.checks.core import CheckResult, Misconception, case_index, check_function
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.samplers import ddpm_step
from ldm_course.schedules import make_schedule

# ---- the sinusoidal time embedding ----

SEE_EMB = "see the time embedding in section 3"


def reference_timestep_embedding(t, dim):
    return timestep_embedding(t, dim)


def _wrong_embedding(*, order="cos_sin", denominator=0, sign=-1.0):
    """The embedding built like the reference with one piece replaced: order "sin_cos" or
    "interleaved"; frequencies max_period^(sign * i / (half - denominator))."""

    def fn(t, dim):
        half = dim // 2
        i = torch.arange(half)  # (half,)
        freqs = torch.exp(sign * math.log(10000.0) * i / (half - denominator))  # (half,)
        args = t.float()[:, None] * freqs[None, :]  # (B, half)
        cos, sin = torch.cos(args), torch.sin(args)
        if order == "interleaved":
            return torch.stack([cos, sin], dim=-1).flatten(1)  # (B, half, 2) -> (B, dim)
        return torch.cat([sin, cos] if order == "sin_cos" else [cos, sin], dim=-1)  # (B, dim)

    return fn


EMBEDDING_MISCONCEPTIONS = (
    Misconception(
        "sin and cos swapped",
        f"the first half holds cos(t w_i), the second sin(t w_i): {SEE_EMB}",
        _wrong_embedding(order="sin_cos"),
    ),
    Misconception(
        "cos and sin interleaved",
        f"concatenate the halves, [cos(t w_0), ..., cos(t w_{{d/2-1}}), sin(t w_0), ...], do not alternate them: {SEE_EMB}",
        _wrong_embedding(order="interleaved"),
    ),
    Misconception(
        "the exponent divided by d/2 - 1",
        f"w_i = 10000^(-i / (d/2)): divide i by d/2, not d/2 - 1 (the last frequency stays above 1/10000): {SEE_EMB}",
        _wrong_embedding(denominator=1),
    ),
    Misconception(
        "frequencies that grow",
        f"w_i = 10000^(-i / (d/2)) falls from 1 to about 1/10000: the exponent is negative: {SEE_EMB}",
        _wrong_embedding(sign=1.0),
    ),
)


def check_timestep_embedding(
    fn: Callable, *, quiet: bool = False, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    """fn(t, dim) -> (B, dim) float32: [cos(t w_i)] then [sin(t w_i)], w_i = 10000^(-i / (dim/2)).
    t is a (B,) long tensor with 0 and 999 in every case; dims 32, 8 and 64."""

    def inputs(gen):
        t = torch.randint(0, 1000, (5,), generator=gen)  # (5,) long, as the U-Net passes it
        t[0], t[-1] = 0, 999
        return {"t": t, "dim": (32, 8, 64)[case_index(gen)]}

    return check_function(
        "timestep_embedding",
        fn,
        reference_timestep_embedding,
        inputs,
        atol=1e-4,  # cos/sin of arguments up to 999 in float32
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=EMBEDDING_MISCONCEPTIONS,
    )


# ---- a time-conditioned ResBlock (a build exercise: the learner writes the class) ----

SEE_RES = "see the ResBlock exercise in section 3"
RES_CASES = ((16, 32), (32, 32), (32, 16))  # (in_channels, out_channels): wider, same, narrower


def _forward(block_cls, x, temb, in_channels, out_channels, state):
    """block_cls(in, out, groups=8, temb_dim=24) with the reference block's weights, on (x, temb)."""
    block = block_cls(in_channels, out_channels, groups=8, temb_dim=temb.shape[1], dropout=0.0)
    block.load_state_dict(state)  # strict: the same parameter names and shapes as blocks.ResBlock
    return block.eval()(x, temb)  # (B, out, H, W)


def _runner(block_cls) -> Callable:
    """The class as a function of the check's inputs (misconception detectors read .block_cls)."""

    def run(**inputs):
        return _forward(block_cls, **inputs)

    run.block_cls = block_cls
    return run


def reference_res_block(x, temb, in_channels, out_channels, state):
    return _forward(ResBlock, x, temb, in_channels, out_channels, state)


class _TimeAfterConv2(ResBlock):
    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h + self.temb(F.silu(temb))[:, :, None, None]


class _NoSkip(ResBlock):
    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        return self.conv2(self.dropout(F.silu(self.norm2(h))))


class _NormAfterActivation(ResBlock):
    def forward(self, x, temb=None):
        h = self.conv1(self.norm1(F.silu(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(self.norm2(F.silu(h))))
        return self.skip(x) + h


class _TembWithoutSiLU(ResBlock):
    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(temb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _IdentitySkip(ResBlock):
    """x + h with no 1x1 convolution (the parameters `skip.weight`, `skip.bias` missing)."""

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        self.skip = nn.Identity()


def _no_projection(learner_fn, inputs_for, got) -> bool:
    """The learner's class, built with in != out channels, has no 1x1 convolution `skip`."""
    block = learner_fn.block_cls(16, 32, groups=8, temb_dim=24, dropout=0.0)
    return not isinstance(getattr(block, "skip", None), nn.Conv2d)


RES_BLOCK_MISCONCEPTIONS = (
    Misconception(
        "the time embedding added after the second convolution",
        f"add self.temb(SiLU(temb)) to h right after conv1, so the second convolution sees the noise level: {SEE_RES}",
        _runner(_TimeAfterConv2),
    ),
    Misconception(
        "no skip connection",
        f"a residual block returns skip(x) + h: {SEE_RES}",
        _runner(_NoSkip),
    ),
    Misconception(
        "a skip without the 1x1 projection",
        f"when in_channels != out_channels, x has the wrong width to add: self.skip = nn.Conv2d(in_channels, out_channels, 1), else nn.Identity(): {SEE_RES}",
        _runner(_IdentitySkip),
        detect=_no_projection,
    ),
    Misconception(
        "the norm after the activation",
        f"each half is norm, then SiLU, then (dropout and) conv: conv(SiLU(GroupNorm(x))): {SEE_RES}",
        _runner(_NormAfterActivation),
    ),
    Misconception(
        "the time embedding without SiLU",
        f"project SiLU(temb), not temb: h + self.temb(F.silu(temb))[:, :, None, None]: {SEE_RES}",
        _runner(_TembWithoutSiLU),
    ),
)


def _random_state(in_channels, out_channels, temb_dim, gen) -> dict[str, torch.Tensor]:
    """A reference ResBlock's state_dict with every value random (conv2 starts at zero otherwise)."""
    block = ResBlock(in_channels, out_channels, groups=8, temb_dim=temb_dim)
    state = {k: 0.2 * torch.randn(v.shape, generator=gen) for k, v in block.state_dict().items()}
    for k in ("norm1.weight", "norm2.weight"):
        state[k] = state[k] + 1.0  # GroupNorm scales near 1
    return state


def _starts_as_identity_residual(block_cls, in_channels, out_channels, temb_dim) -> str | None:
    fresh = block_cls(in_channels, out_channels, groups=8, temb_dim=temb_dim, dropout=0.0)
    conv2 = getattr(fresh, "conv2", None)
    if (
        not isinstance(conv2, nn.Conv2d)
        or conv2.weight.abs().sum() > 0
        or conv2.bias.abs().sum() > 0
    ):
        return "conv2 must start at zero (nn.init.zeros_ on its weight and bias), so the block starts as skip(x)"
    return None


def check_res_block(
    block_cls: type, *, quiet: bool = False, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    """block_cls(in_channels, out_channels, *, groups, temb_dim, dropout) with blocks.ResBlock's
    parameter names; its forward(x, temb) is compared with the reference's, both loaded with the
    same random weights, on widths 16 -> 32, 32 -> 32 and 32 -> 16. A fresh block's conv2 is zero."""

    def inputs(gen):
        c_in, c_out = RES_CASES[case_index(gen)]
        state = _random_state(c_in, c_out, 24, gen)
        return {
            "x": torch.randn(2, c_in, 6, 6, generator=gen),
            "temb": torch.randn(2, 24, generator=gen),
            "in_channels": c_in,
            "out_channels": c_out,
            "state": state,
        }

    def verify(got, inputs):
        return _starts_as_identity_residual(
            block_cls, inputs["in_channels"], inputs["out_channels"], 24
        )

    return check_function(
        "ResBlock",
        _runner(block_cls),
        reference_res_block,
        inputs,
        cases=len(RES_CASES),
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=RES_BLOCK_MISCONCEPTIONS,
        verify=verify,
    )


# ---- one DDPM ancestral step ----

SEE_DDPM = "see DDPM's reverse step in section 6"
DDPM_CASES = (
    500,
    999,
    0,
    1,
)  # t of each case: middle, first step, last step (no noise), next to last


def reference_ddpm_step(x_t, eps, t, noise, schedule):
    return ddpm_step(x_t, eps, t, schedule, noise=noise)


def _wrong_ddpm(*, root="alpha", factor=True, variance="posterior", noise_at_0=False, sigma=True):
    """DDPM eq. 11 built with one piece replaced: root "alpha_bar" (1/sqrt(alpha_bar_t) in front),
    factor=False (eps unscaled), variance "beta" (sigma^2 = beta_t), noise_at_0 (sqrt(beta_0) z at
    t = 0), sigma=False (noise scaled by the variance, not its square root)."""

    def fn(x_t, eps, t, noise, schedule):
        beta, alpha = float(schedule.betas[t]), float(schedule.alphas[t])
        a_bar, a_bar_prev = float(schedule.alpha_bar[t]), float(schedule.alpha_bar_prev[t])
        front = 1 / math.sqrt(a_bar if root == "alpha_bar" else alpha)
        coef = beta / math.sqrt(1 - a_bar) if factor else 1.0
        mean = front * (x_t - coef * eps)  # (B, C, H, W)
        var = beta if variance == "beta" else (1 - a_bar_prev) / (1 - a_bar) * beta
        if t == 0:
            return mean + math.sqrt(beta) * noise if noise_at_0 else mean
        return mean + (math.sqrt(var) if sigma else var) * noise

    return fn


DDPM_MISCONCEPTIONS = (  # the variance before t = 0: a beta_t answer fails on the first case
    Misconception(
        "sigma_t^2 = beta_t instead of the posterior variance",
        f"this course uses sigma_t^2 = beta_tilde_t = (1 - alpha_bar_(t-1)) / (1 - alpha_bar_t) beta_t: {SEE_DDPM}",
        _wrong_ddpm(variance="beta"),
    ),
    Misconception(
        "noise added at t = 0",
        f"the last step (t = 0) returns the mean: no noise, whatever `noise` holds: {SEE_DDPM}",
        _wrong_ddpm(noise_at_0=True),
    ),
    Misconception(
        "sqrt(alpha_bar_t) in place of sqrt(alpha_t)",
        f"one step undoes one step of noise: divide by sqrt(alpha_t) = sqrt(1 - beta_t), not sqrt(alpha_bar_t): {SEE_DDPM}",
        _wrong_ddpm(root="alpha_bar"),
    ),
    Misconception(
        "the factor beta_t / sqrt(1 - alpha_bar_t) left out",
        f"the step removes only part of the predicted noise: x_t - beta_t / sqrt(1 - alpha_bar_t) eps: {SEE_DDPM}",
        _wrong_ddpm(factor=False),
    ),
    Misconception(
        "the noise scaled by the variance",
        f"the noise is scaled by the standard deviation sigma_t = sqrt(beta_tilde_t): {SEE_DDPM}",
        _wrong_ddpm(sigma=False),
    ),
)


def check_ddpm_step(
    fn: Callable, *, quiet: bool = False, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    """fn(x_t, eps, t, noise, schedule) -> x_{t-1} by DDPM eq. 11 with sigma_t^2 = beta_tilde_t,
    and no noise at t = 0. t is a Python int; cases t = 500, 999, 0 (noise given but unused), 1."""
    schedule = make_schedule("linear", 1000)

    def inputs(gen):
        x_t = torch.randn(2, 4, 8, 8, generator=gen)
        return {
            "x_t": x_t,
            "eps": torch.randn(x_t.shape, generator=gen),
            "t": DDPM_CASES[case_index(gen)],
            "noise": torch.randn(x_t.shape, generator=gen),
            "schedule": schedule,
        }

    return check_function(
        "ddpm_step",
        fn,
        reference_ddpm_step,
        inputs,
        cases=len(DDPM_CASES),
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=DDPM_MISCONCEPTIONS,
    )
