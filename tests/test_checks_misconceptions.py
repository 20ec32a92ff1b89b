"""Checks that teach: every exercise check recognises its common wrong answers and names the
misconception; other wrong answers get a short generic line; edge cases are in every run."""

import pytest
import torch

from ldm_course.course import checks

EXERCISE_CHECKS = (
    "check_reparameterize",
    "check_kl",
    "check_normalize_channels",
    "check_lpips_distance",
    "check_hinge_d_loss",
    "check_scale_factor",
    "check_latent_snr",
    "check_q_sample",
    "check_ddim_step",
    "check_cfg",
    "check_slerp",
    "check_timestep_embedding",
    "check_ddpm_step",
)


def reference(name):
    return getattr(checks, "reference_" + name.removeprefix("check_"))


def assert_short(message: str) -> None:
    assert len(message.splitlines()) <= 3 and "tensor(" not in message, message


def test_every_check_has_misconceptions_with_distinct_names():
    assert set(EXERCISE_CHECKS) <= set(checks.MISCONCEPTIONS)
    for name, misconceptions in checks.MISCONCEPTIONS.items():
        names = [m.name for m in misconceptions]
        assert len(names) >= 3 and len(set(names)) == len(names), name
        for m in misconceptions:
            assert m.hint and "see " in m.hint, (name, m.name)  # says where to look


@pytest.mark.parametrize(
    "name, index, variant",
    [
        (name, i, v)
        for name in EXERCISE_CHECKS
        for i, m in enumerate(checks.MISCONCEPTIONS[name])
        for v in range(len(m.fns))
    ],
)
def test_every_misconception_fails_and_is_named(name, index, variant, capsys):
    misconception = checks.MISCONCEPTIONS[name][index]
    result = getattr(checks, name)(misconception.fns[variant], quiet=True)
    assert result.status == "failed" and not result
    assert result.message.startswith(f"❌ {result.name}: looks like {misconception.name}: ")
    assert misconception.hint in result.message
    assert_short(result.message)
    assert capsys.readouterr().out == ""  # quiet


@pytest.mark.parametrize("name", EXERCISE_CHECKS)
def test_reference_passes_and_unattempted_is_reported(name, capsys):
    check = getattr(checks, name)
    result = check(reference(name))
    assert result.passed, result.message
    assert capsys.readouterr().out.startswith("✅")

    def stub(*args, **kwargs):
        raise NotImplementedError

    result = check(stub, quiet=True)
    assert result.status == "not attempted" and "not attempted yet" in result.message


# one wrong answer per check that is no known misconception: a generic line, no tensor repr
UNKNOWN_WRONG = {
    "check_reparameterize": lambda mean, logvar, eps: mean * 1.5,
    "check_kl": lambda mean, logvar: mean.abs().sum(dim=(1, 2, 3)),
    "check_normalize_channels": lambda features: features * 0.5,
    "check_lpips_distance": lambda features_x, features_y, head_weights: features_x[0].mean(
        dim=(1, 2, 3)
    ),
    "check_hinge_d_loss": lambda logits_real, logits_fake: logits_real.mean() * 3,
    "check_scale_factor": lambda latents: torch.tensor(0.123, dtype=torch.float64),
    "check_latent_snr": lambda alpha_bar, data_std: alpha_bar * 7,
    "check_q_sample": lambda x_0, t, noise, alpha_bar: x_0 * 2,
    "check_ddim_step": lambda x_t, eps, t, t_prev, alpha_bar: x_t * 2,
    "check_cfg": lambda eps_cond, eps_uncond, guidance_scale: eps_cond * 3,
    "check_slerp": lambda z_0, z_1, alpha: z_0 * 0.25,
    "check_timestep_embedding": lambda t, dim: torch.zeros(len(t), dim) + t.float()[:, None] / 7,
    "check_ddpm_step": lambda x_t, eps, t, noise, schedule: x_t * 0.5 + eps,
}


@pytest.mark.parametrize("name", EXERCISE_CHECKS)
def test_unknown_wrong_answer_gets_a_short_generic_line(name):
    result = getattr(checks, name)(UNKNOWN_WRONG[name], quiet=True)
    assert result.status == "failed" and "looks like" not in result.message
    assert "case 1" in result.message and "index ()" not in result.message
    scalar = name in ("check_hinge_d_loss", "check_scale_factor")  # one number: both are shown
    assert (
        ("returned " in result.message and "expected " in result.message)
        if scalar
        else ("largest error" in result.message)
    ), result.message
    assert_short(result.message)


def test_failure_messages_show_shapes_of_tensor_lists_not_their_values():
    result = checks.check_lpips_distance(
        lambda features_x, features_y, head_weights: 1 / 0, quiet=True
    )
    assert "raised ZeroDivisionError" in result.message
    assert "features_x=3 tensors (2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4)" in result.message
    assert_short(result.message)


def test_a_multiline_exception_is_cut_to_one_line():
    def noisy(mean, logvar, eps):
        raise ValueError(f"first line\n{torch.ones(50)}")

    result = checks.check_reparameterize(noisy, quiet=True)
    assert "raised ValueError: first line" in result.message
    assert_short(result.message)


def test_ddim_check_always_includes_the_final_step():
    """A learner's alpha_bar[t_prev] wraps to alpha_bar[-1] at t_prev = -1. It used to pass: the
    four seeded cases never drew t_prev = -1. Every run now has t = 0 -> -1 and a large t -> -1."""
    seen = []

    def spy(x_t, eps, t, t_prev, alpha_bar):
        seen.append((t, t_prev))
        return checks.reference_ddim_step(x_t, eps, t, t_prev, alpha_bar)

    assert checks.check_ddim_step(spy, quiet=True).passed
    assert (0, -1) in seen and any(t > 0 and t_prev == -1 for t, t_prev in seen)

    def wrapped(x_t, eps, t, t_prev, alpha_bar):
        a_t, a_prev = alpha_bar[t].item(), alpha_bar[t_prev].item()  # wraps at -1
        pred_x0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        return a_prev**0.5 * pred_x0 + (1 - a_prev) ** 0.5 * eps

    result = checks.check_ddim_step(wrapped, quiet=True)
    assert "looks like alpha_bar[-1] at the final step" in result.message


def test_normalize_check_has_dead_pixels_so_a_missing_eps_fails():
    """Without the + 1e-10, a pixel whose channels are all 0 gives nan; it used to pass (no dead
    pixels in the random features)."""
    result = checks.check_normalize_channels(
        lambda features: features / features.norm(dim=1, keepdim=True), quiet=True
    )
    assert "looks like the eps left out" in result.message


@pytest.mark.parametrize(
    "name, answer",
    [  # the solved notebooks' answers, written differently from the package's references
        ("check_reparameterize", lambda mean, logvar, eps: mean + torch.exp(0.5 * logvar) * eps),
        (
            "check_kl",
            lambda mean, logvar: (
                0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3))
            ),
        ),
        (
            "check_lpips_distance",
            lambda features_x, features_y, head_weights: sum(
                (
                    v
                    * (
                        checks.reference_normalize_channels(fx)
                        - checks.reference_normalize_channels(fy)
                    ).pow(2)
                )
                .sum(dim=1)
                .mean(dim=(1, 2))
                for fx, fy, v in zip(features_x, features_y, head_weights, strict=True)
            ),
        ),
        ("check_scale_factor", lambda latents: 1.0 / latents.double().std()),
        ("check_scale_factor", lambda latents: float(1 / latents.std())),
        (
            "check_q_sample",
            lambda x_0, t, noise, alpha_bar: (
                alpha_bar[t].float().view(-1, 1, 1, 1).sqrt() * x_0
                + (1 - alpha_bar[t].float().view(-1, 1, 1, 1)).sqrt() * noise
            ),
        ),
    ],
)
def test_correct_answers_written_another_way_pass(name, answer):
    result = getattr(checks, name)(answer, quiet=True)
    assert result.passed, result.message


def _a(alpha_bar, t):
    return alpha_bar[t].float().view(-1, 1, 1, 1)


@pytest.mark.parametrize(
    "name, answer, misconception",
    [  # wrong answers as a learner writes them, independent of the misconception functions
        (
            "check_reparameterize",
            lambda mean, logvar, eps: mean + torch.exp(logvar) * eps,
            "the variance for the standard deviation",
        ),
        (
            "check_kl",
            # the ELBO's term -KL, returned as if it were KL
            lambda mean, logvar: (
                0.5 * torch.sum(1 + logvar - mean**2 - logvar.exp(), dim=(1, 2, 3))
            ),
            "the KL sign flipped",
        ),
        (
            "check_normalize_channels",
            lambda features: features / features.norm(dim=1, keepdim=True),
            "the eps left out",
        ),
        (
            "check_hinge_d_loss",
            lambda logits_real, logits_fake: (
                (torch.relu(1 - logits_fake).mean() + torch.relu(1 + logits_real).mean()) / 2
            ),
            "real and fake swapped",
        ),
        ("check_scale_factor", lambda latents: latents.std(), "the std instead of 1 / std"),
        (
            "check_latent_snr",
            lambda alpha_bar, data_std: data_std * alpha_bar / (1 - alpha_bar),
            "data_std where data_std**2 belongs",
        ),
        (
            "check_q_sample",
            lambda x_0, t, noise, alpha_bar: (
                _a(alpha_bar, t - 1).sqrt() * x_0 + (1 - _a(alpha_bar, t - 1)).sqrt() * noise
            ),
            "alpha_bar[t - 1]: t off by one",
        ),
        (
            "check_q_sample",
            lambda x_0, t, noise, alpha_bar: (
                _a(alpha_bar, t) * x_0 + (1 - _a(alpha_bar, t)) * noise
            ),
            "the square roots left out",
        ),
        (
            "check_cfg",
            lambda eps_cond, eps_uncond, guidance_scale: (
                (1 + guidance_scale) * eps_cond - guidance_scale * eps_uncond
            ),
            "guidance built around the conditional prediction",
        ),
        (
            "check_slerp",
            lambda z_0, z_1, alpha: torch.lerp(z_0, z_1, alpha),
            "linear interpolation",
        ),
    ],
)
def test_wrong_answers_written_another_way_are_named(name, answer, misconception):
    result = getattr(checks, name)(answer, quiet=True)
    assert f"looks like {misconception}:" in result.message, result.message
