"""The three build checks (a whole VAE loss, a whole training step, a whole sampling loop): a
learner's own correct code passes, every known wrong answer fails and is named, a loss without a
gradient fails, and an unattempted exercise or a crash is reported without raising."""

import pytest
import torch
import torch.nn.functional as F

from ldm_course.course import checks
from ldm_course.samplers import ddim_step, ddim_timesteps, previous_timesteps

BUILD_CHECKS = ("check_vae_loss", "check_training_step", "check_sampling_loop")


# ---- correct answers written the way a learner would, not by calling the package's reference ----


def learner_vae_loss(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
    rec = (x - recon).abs().mean()
    kl = 0.5 * (posterior.mean**2 + posterior.logvar.exp() - 1 - posterior.logvar)
    kl = kl.sum(dim=(1, 2, 3)).mean() / (x.shape[1] * x.shape[2] * x.shape[3])
    total, terms = rec + kl_weight * kl, {"recon": rec.item(), "kl": kl.item()}
    if perceptual_weight > 0:
        p = lpips(recon, x).mean()
        total, terms["lpips"] = total + perceptual_weight * p, p.item()
    return total, terms


def learner_training_step(model, mean, std, y, *, generator, cond_drop_prob):
    b, num_steps = mean.shape[0], model.schedule.num_steps
    eps_z = torch.randn(mean.shape, generator=generator)
    t = torch.randint(0, num_steps, (b,), generator=generator)
    noise = torch.randn(mean.shape, generator=generator)
    drop = torch.rand(b, generator=generator) < cond_drop_prob
    z_0 = model.scale_factor * (mean + std * eps_z)
    y = torch.where(drop, model.unet.cfg.num_classes, y)
    a = model.schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
    z_t = a.sqrt() * z_0 + (1 - a).sqrt() * noise
    return F.mse_loss(model.unet(z_t, t, y), noise)


@torch.no_grad()
def learner_sampling_loop(model, y, z_T, *, steps, guidance_scale):
    timesteps = ddim_timesteps(model.schedule.num_steps, steps)
    null = torch.full_like(y, model.unet.cfg.num_classes)
    z = z_T
    for t, t_prev in zip(timesteps.tolist(), previous_timesteps(timesteps).tolist(), strict=True):
        t_batch = torch.full((z.shape[0],), t)
        eps_cond, eps_uncond = model.unet(z, t_batch, y), model.unet(z, t_batch, null)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        z = ddim_step(z, eps, t, t_prev, model.schedule)
    return model.decode(z).clamp(-1, 1)


LEARNERS = {
    "check_vae_loss": learner_vae_loss,
    "check_training_step": learner_training_step,
    "check_sampling_loop": learner_sampling_loop,
}
REFERENCES = {
    "check_vae_loss": checks.reference_vae_loss,
    "check_training_step": checks.reference_training_step,
    "check_sampling_loop": checks.reference_sampling_loop,
}


def assert_short(message: str) -> None:
    assert len(message.splitlines()) <= 3 and "tensor(" not in message, message


@pytest.mark.parametrize("name", BUILD_CHECKS)
def test_reference_and_a_learners_own_code_pass(name, capsys):
    check = getattr(checks, name)
    state = torch.get_rng_state()
    assert check(REFERENCES[name]).passed
    assert capsys.readouterr().out.startswith("✅")
    result = check(LEARNERS[name], quiet=True)
    assert result.passed, result.message
    assert capsys.readouterr().out == ""  # quiet prints nothing
    assert torch.equal(torch.get_rng_state(), state)  # a check leaves the global RNG alone


@pytest.mark.parametrize(
    "name, index, variant",
    [
        (name, i, v)
        for name in BUILD_CHECKS
        for i, m in enumerate(checks.MISCONCEPTIONS[name])
        for v in range(len(m.fns))
    ],
)
def test_every_misconception_fails_and_is_named(name, index, variant):
    misconception = checks.MISCONCEPTIONS[name][index]
    result = getattr(checks, name)(misconception.fns[variant], quiet=True)
    assert result.status == "failed"
    assert f"looks like {misconception.name}:" in result.message, result.message
    assert_short(result.message)


@pytest.mark.parametrize("name", BUILD_CHECKS)
def test_not_attempted_and_crashes_are_reported_not_raised(name):
    def stub(*args, **kwargs):
        raise NotImplementedError

    result = getattr(checks, name)(stub, quiet=True)
    assert result.status == "not attempted" and "not attempted yet" in result.message
    assert result.use(stub, REFERENCES[name]) is REFERENCES[name]

    def crash(*args, **kwargs):
        return {}["missing"]

    result = getattr(checks, name)(crash, quiet=True)
    assert result.status == "failed" and "raised KeyError" in result.message
    assert_short(result.message)


def test_a_loss_without_gradient_fails():
    def detached_vae_loss(*args, **kwargs):
        total, terms = learner_vae_loss(*args, **kwargs)
        return total.detach(), terms

    result = checks.check_vae_loss(detached_vae_loss, quiet=True)
    assert result.status == "failed" and "gradient" in result.message, result.message

    def step_without_grad(*args, **kwargs):
        with torch.no_grad():
            return learner_training_step(*args, **kwargs)

    result = checks.check_training_step(step_without_grad, quiet=True)
    assert result.status == "failed" and "gradient" in result.message, result.message


def test_vae_loss_check_compares_each_term_and_passes_the_given_lpips():
    seen = []

    def no_lpips_key(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
        seen.append(lpips)
        total, terms = learner_vae_loss(
            x,
            recon,
            posterior,
            lpips=lpips,
            perceptual_weight=perceptual_weight,
            kl_weight=kl_weight,
        )
        terms.pop("lpips", None)
        return total, terms

    metric = checks.vae.LPIPS("alex", "stlpips")
    result = checks.check_vae_loss(no_lpips_key, lpips=metric, quiet=True)
    assert result.status == "failed" and "no 'lpips' entry" in result.message, result.message
    assert seen[0] is None and seen[1] is metric  # perceptual_weight 0, then > 0


def test_training_step_names_the_draw_order_for_a_t_noise_swap():
    t_noise_swap = next(m for m in checks.TRAINING_STEP_MISCONCEPTIONS if "another order" in m.name)
    message = checks.check_training_step(t_noise_swap.fn, quiet=True).message
    assert "eps_z, t, noise, drop" in message


def test_sampling_loop_check_takes_the_learners_guidance_and_keeps_the_global_rng():
    def cfg(eps_cond, eps_uncond, guidance_scale):
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    state = torch.get_rng_state()

    def fresh_noise(model, y, z_T, *, steps, guidance_scale):
        z = torch.randn(z_T.shape)  # the global RNG: the check must restore it
        return learner_sampling_loop(model, y, z, steps=steps, guidance_scale=guidance_scale)

    assert checks.check_sampling_loop(learner_sampling_loop, cfg_fn=cfg, quiet=True).passed
    result = checks.check_sampling_loop(fresh_noise, quiet=True)
    assert "looks like z_T ignored" in result.message
    assert torch.equal(torch.get_rng_state(), state)


def vae_loss_kl_not_divided(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
    total, terms = learner_vae_loss(
        x, recon, posterior, lpips=lpips, perceptual_weight=perceptual_weight, kl_weight=kl_weight
    )
    kl = posterior.kl().mean()
    return total + kl_weight * (kl - terms["kl"]), {**terms, "kl": kl}


def training_step_t_noise_swapped(model, mean, std, y, *, generator, cond_drop_prob):
    b = mean.shape[0]
    eps_z = torch.randn(mean.shape, generator=generator)
    noise = torch.randn(mean.shape, generator=generator)
    t = torch.randint(0, model.schedule.num_steps, (b,), generator=generator)
    drop = torch.rand(b, generator=generator) < cond_drop_prob
    y = torch.where(drop, model.unet.cfg.num_classes, y)
    z_0 = model.scale_factor * (mean + std * eps_z)
    a = model.schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
    return F.mse_loss(model.unet(a.sqrt() * z_0 + (1 - a).sqrt() * noise, t, y), noise)


@torch.no_grad()
def sampling_loop_unscaled_decode(model, y, z_T, *, steps, guidance_scale):
    timesteps = ddim_timesteps(model.schedule.num_steps, steps)
    null = torch.full_like(y, model.unet.cfg.num_classes)
    z = z_T
    for t, t_prev in zip(timesteps.tolist(), previous_timesteps(timesteps).tolist(), strict=True):
        t_batch = torch.full((z.shape[0],), t)
        eps_cond, eps_uncond = model.unet(z, t_batch, y), model.unet(z, t_batch, null)
        z = ddim_step(
            z, eps_uncond + guidance_scale * (eps_cond - eps_uncond), t, t_prev, model.schedule
        )
    return model.vae.decode(z).clamp(-1, 1)


@pytest.mark.parametrize(
    "name, answer, misconception",
    [  # wrong answers as a learner writes them, independent of the misconception functions
        (
            "check_vae_loss",
            vae_loss_kl_not_divided,
            "the KL not divided by the number of pixel values",
        ),
        ("check_training_step", training_step_t_noise_swapped, "the random draws in another order"),
        (
            "check_sampling_loop",
            sampling_loop_unscaled_decode,
            "decoding without dividing by the scale factor",
        ),
    ],
)
def test_wrong_answers_written_another_way_are_named(name, answer, misconception):
    result = getattr(checks, name)(answer, quiet=True)
    assert f"looks like {misconception}:" in result.message, result.message
    if name == "check_training_step":
        assert "eps_z, t, noise, drop" in result.message
