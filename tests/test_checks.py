"""Every exercise check passes the reference, reports a wrong answer with what differs, and
reports an unattempted exercise without raising."""

import pytest
import torch

from ldm_course.course import checks

CASES = {
    "check_reparameterize": (
        checks.reference_reparameterize,
        lambda mean, logvar, eps: mean + logvar.exp() * eps,
    ),
    "check_kl": (
        checks.reference_kl,
        lambda mean, logvar: 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean(dim=(1, 2, 3)),
    ),
    "check_normalize_channels": (
        checks.reference_normalize_channels,
        lambda features: features / features.norm(),
    ),
    "check_lpips_distance": (
        checks.reference_lpips_distance,
        lambda features_x, features_y, head_weights: sum(
            (fx - fy).pow(2).mean(dim=(1, 2, 3))
            for fx, fy in zip(features_x, features_y, strict=True)
        ),
    ),
    "check_hinge_d_loss": (
        checks.reference_hinge_d_loss,
        lambda logits_real, logits_fake: (
            0.5 * ((1 - logits_real).mean() + (1 + logits_fake).mean())
        ),
    ),
    "check_scale_factor": (checks.reference_scale_factor, lambda latents: latents.std()),
    "check_latent_snr": (
        checks.reference_latent_snr,
        lambda alpha_bar, data_std: alpha_bar / (1 - alpha_bar),
    ),
    "check_q_sample": (checks.reference_q_sample, lambda x_0, t, noise, alpha_bar: x_0 + noise),
    "check_ddim_step": (
        checks.reference_ddim_step,
        lambda x_t, eps, t, t_prev, alpha_bar: x_t - eps,
    ),
    "check_cfg": (
        checks.reference_cfg,
        lambda eps_cond, eps_uncond, guidance_scale: (
            eps_cond + guidance_scale * (eps_cond - eps_uncond)
        ),
    ),
    "check_slerp": (
        checks.reference_slerp,
        lambda z_0, z_1, alpha: (1 - alpha) * z_0 + alpha * z_1,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reference_passes_and_wrong_answer_fails(name, capsys):
    reference, wrong = CASES[name]
    check = getattr(checks, name)
    assert check(reference).passed
    assert "✅" in capsys.readouterr().out
    result = check(wrong)
    assert result.status == "failed"
    out = capsys.readouterr().out
    assert "❌" in out and "case 1" in out


@pytest.mark.parametrize("name", sorted(CASES))
def test_not_attempted_never_raises(name, capsys):
    def stub(**kwargs):
        raise NotImplementedError

    result = getattr(checks, name)(lambda *a, **k: stub())
    assert result.status == "not attempted" and not result
    assert "not attempted yet" in capsys.readouterr().out
    reference, _ = CASES[name]
    assert result.use(stub, reference) is reference


def test_messages_say_what_differs(capsys):
    checks.check_reparameterize(lambda mean, logvar, eps: mean[0])
    assert "shape" in capsys.readouterr().out
    checks.check_reparameterize(lambda mean, logvar, eps: 1 / 0)
    assert "raised ZeroDivisionError" in capsys.readouterr().out
    checks.check_scale_factor(lambda latents: "one")
    assert "returned a str" in capsys.readouterr().out


def test_slerp_check_catches_linear_interpolation_but_not_its_own_reference():
    z = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    assert checks.reference_slerp(z[0], z[1], 0.0).allclose(z[0])
