"""Checks diagnose what their misconception tables do not name: every wrong answer here is outside
the tables (written as a learner would), and the message must name what is wrong with it:
the type, dtype or device of the result; an input changed in place; the global RNG; a constant
factor; a time limit; and a scalar's message never says "index ()". Correct answers still pass
with the message the solved notebooks show."""

import signal
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from ldm_course.course import checks
from ldm_course.course.checks.models import check_device, exact_convolutions
from ldm_course.samplers import ddim_step, ddim_timesteps, previous_timesteps


def _a(alpha_bar, t):
    return alpha_bar[t].float().view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)


def q_sample_right(x_0, t, noise, alpha_bar):
    a = _a(alpha_bar, t)
    return a.sqrt() * x_0 + (1 - a).sqrt() * noise


def q_sample_as_in_the_notebook(x_0, t, noise, alpha_bar):
    a = alpha_bar[t].view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1), float64: roots first, then cast
    return a.sqrt().to(x_0.dtype) * x_0 + (1 - a).sqrt().to(x_0.dtype) * noise


def step(*, eps_z=None, t_high=0, z0_fn=None, loss_fn=F.mse_loss, change_std=False, to_device=True):
    """A training step as a learner writes it; each keyword puts one mistake in."""

    def fn(model, mean, std, y, *, generator, cond_drop_prob):
        b, num_steps = mean.shape[0], model.schedule.num_steps
        e = eps_z(mean) if eps_z else torch.randn(mean.shape, generator=generator)
        t = torch.randint(0, num_steps + t_high, (b,), generator=generator)
        noise = torch.randn(mean.shape, generator=generator)
        drop = torch.rand(b, generator=generator) < cond_drop_prob
        if change_std:
            std.mul_(e)  # in place: the caller's std changes
            z_0 = model.scale_factor * (mean + std)
        else:
            z_0 = (z0_fn or (lambda z: model.scale_factor * z))(mean + std * e)
        y = torch.where(drop, model.unet.cfg.num_classes, y)
        if to_device:
            z_0, t, noise, y = (v.to(model.device) for v in (z_0, t, noise, y))
        z_t = q_sample_as_in_the_notebook(z_0, t, noise, model.schedule.alpha_bar.to(z_0.device))
        return loss_fn(model.unet(z_t, t, y), noise)

    return fn


def vae_loss(*, recon_term=lambda x, r: (x - r).abs().mean(), total_fn=None):
    def fn(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
        rec = recon_term(x, recon)
        kl = posterior.kl().mean() / x[0].numel()
        total, terms = rec + kl_weight * kl, {"recon": rec.item(), "kl": kl.item()}
        if perceptual_weight > 0:
            p = lpips(recon, x).mean()
            total, terms["lpips"] = total + perceptual_weight * p, p.item()
        return (total_fn(total) if total_fn else total), terms

    return fn


def message(check, answer, **kwargs) -> str:
    result = getattr(checks, check)(answer, quiet=True, **kwargs)
    assert result.status == "failed", result.message
    assert "index ()" not in result.message and len(result.message.splitlines()) == 1
    return result.message


# ---- the type, dtype and device of the result: named at once, whatever the values ----


@pytest.mark.parametrize(
    "check, answer, named",
    [
        (  # right values, float64: alpha_bar[t] not cast (the next cell raises in the package)
            "check_q_sample",
            lambda x_0, t, noise, alpha_bar: (
                alpha_bar[t].view(-1, 1, 1, 1).sqrt() * x_0
                + (1 - alpha_bar[t].view(-1, 1, 1, 1)).sqrt() * noise
            ),
            "dtype torch.float64, expected torch.float32",
        ),
        (
            "check_reparameterize",
            lambda mean, logvar, eps: (mean + (0.5 * logvar).exp() * eps).numpy(),
            "returned a NumPy ndarray",
        ),
        (
            "check_kl",
            lambda mean, logvar: checks.reference_kl(mean, logvar).double(),
            "dtype torch.float64",
        ),
        (
            "check_hinge_d_loss",
            lambda logits_real, logits_fake: checks.reference_hinge_d_loss(
                logits_real, logits_fake
            ).item(),
            "returned a Python float",
        ),
        ("check_hinge_d_loss", lambda logits_real, logits_fake: 1, "returned a Python int"),
        (
            "check_normalize_channels",
            lambda features: (features > 0).long(),
            "dtype torch.int64, expected torch.float32",
        ),
        (
            "check_scale_factor",
            lambda latents: 1 / latents.double().numpy().std(),
            "returned a NumPy float64",
        ),
        (
            "check_slerp",
            lambda z_0, z_1, alpha: checks.reference_slerp(z_0, z_1, alpha).to("meta"),
            "the result is on meta, expected on cpu",
        ),
        (
            "check_cfg",
            lambda eps_cond, eps_uncond, guidance_scale: checks.reference_cfg(
                eps_cond, eps_uncond, guidance_scale
            ).to("meta"),
            "the result is on meta",
        ),
    ],
)
def test_wrong_type_dtype_or_device_is_named(check, answer, named):
    text = message(check, answer)
    assert named in text and "case 1 of" in text, text


def test_wrong_types_in_the_build_checks_are_named():
    text = message("check_training_step", step(loss_fn=lambda a, b: F.mse_loss(a, b).double()))
    assert "dtype torch.float64" in text, text
    text = message("check_vae_loss", vae_loss(total_fn=lambda total: total.detach().numpy()))
    assert "item 0 of the result: returned a NumPy ndarray" in text, text


def test_numbers_that_will_do_still_pass():
    """A scale factor is one number: a float, a float32 or a float64 tensor; vae_loss's terms are
    for display and may be floats."""
    for answer in (
        lambda latents: float(1 / latents.std()),
        lambda latents: 1 / latents.std(),
        lambda latents: 1 / latents.double().std(),
    ):
        assert checks.check_scale_factor(answer, quiet=True).passed
    assert checks.check_vae_loss(vae_loss(), quiet=True).passed


# ---- inputs changed in place: caught even when the result is right ----


def q_sample_in_place(x_0, t, noise, alpha_bar):
    a = _a(alpha_bar, t)
    return x_0.mul_(a.sqrt()) + (1 - a).sqrt() * noise  # right values, x_0 changed


def reparameterize_in_place(mean, logvar, eps):
    eps *= (0.5 * logvar).exp()
    return mean + eps


def slerp_in_place(z_0, z_1, alpha):
    expected = checks.reference_slerp(z_0.clone(), z_1.clone(), alpha)
    z_1[:] = 0
    return expected


@pytest.mark.parametrize(
    "check, answer, name",
    [
        ("check_q_sample", q_sample_in_place, "`x_0`"),
        ("check_reparameterize", reparameterize_in_place, "`eps`"),
        ("check_slerp", slerp_in_place, "`z_1`"),
        ("check_training_step", step(change_std=True), "`std`"),
    ],
)
def test_inputs_changed_in_place_are_named(check, answer, name):
    text = message(check, answer)
    assert f"changed its input {name} in place" in text, text


def test_a_model_changed_in_place_is_named():
    def scales_the_model(model, mean, std, y, *, generator, cond_drop_prob):
        loss = step()(model, mean, std, y, generator=generator, cond_drop_prob=cond_drop_prob)
        model.scale_factor = 1.0  # "fixing" the model the check lends
        return loss

    text = message("check_training_step", scales_the_model)
    assert "changed its input `model.scale_factor` in place" in text, text


# ---- the global RNG ----


@pytest.mark.parametrize(
    "check, answer, named",
    [
        (
            "check_reparameterize",
            lambda mean, logvar, eps: mean + (0.5 * logvar).exp() * torch.randn_like(mean),
            "use `eps` instead",
        ),
        (
            "check_q_sample",
            lambda x_0, t, noise, alpha_bar: q_sample_right(
                x_0, t, torch.randn_like(x_0), alpha_bar
            ),
            "use `noise` instead",
        ),
        (
            "check_training_step",
            step(eps_z=torch.randn_like),
            "draw every random number from the `generator` you were given",
        ),
        (
            "check_training_step",  # t drawn without generator=
            lambda model, mean, std, y, *, generator, cond_drop_prob: step()(
                model,
                mean,
                std,
                y,
                generator=torch.Generator().manual_seed(int(torch.randint(0, 1000, ()))),
                cond_drop_prob=cond_drop_prob,
            ),
            "the `generator` you were given",
        ),
    ],
)
def test_the_global_rng_is_named(check, answer, named):
    text = message(check, answer)
    assert "changes with the global random state" in text and named in text, text


def test_the_rng_probe_leaves_the_global_stream_as_it_was():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    message("check_reparameterize", lambda mean, logvar, eps: torch.randn_like(mean))
    assert torch.equal(torch.rand(3), expected)


# ---- a constant factor ----


@pytest.mark.parametrize(
    "check, answer, named",
    [
        (  # a sum over all values where the mean belongs
            "check_hinge_d_loss",
            lambda logits_real, logits_fake: (
                0.5 * (F.relu(1 - logits_real).sum() + F.relu(1 + logits_fake).sum())
            ),
            "144 times the expected one everywhere: a sum where a mean belongs (144 values in "
            "`logits_real`)",
        ),
        (  # the L1 term summed: 3 * 3 * 32 * 32 values in case 1
            "check_vae_loss",
            vae_loss(recon_term=lambda x, r: (x - r).abs().sum()),
            "a sum where a mean belongs (9216 values in `x`)",
        ),
        (
            "check_cfg",
            lambda eps_cond, eps_uncond, guidance_scale: (
                0.5 * (eps_uncond + guidance_scale * (eps_cond - eps_uncond))
            ),
            "0.5 times the expected one everywhere: a 1/2 too many",
        ),
        (
            "check_latent_snr",
            lambda alpha_bar, data_std: alpha_bar * data_std**3 / (1 - alpha_bar),
            "`data_std` = ",
        ),
        (
            "check_ddim_step",
            lambda x_t, eps, t, t_prev, alpha_bar: (
                -checks.reference_ddim_step(x_t, eps, t, t_prev, alpha_bar)
            ),
            "-1 times the expected one everywhere: the sign flipped",
        ),
        (
            "check_normalize_channels",
            lambda features: 3.7 * checks.reference_normalize_channels(features),
            "3.7 times the expected one everywhere: a constant missing, or one too many",
        ),
        (  # the loss summed: 6 * 4 * 4 * 4 values
            "check_training_step",
            step(loss_fn=lambda a, b: F.mse_loss(a, b, reduction="sum")),
            "384 times the expected one everywhere: a sum where a mean belongs (384 values in "
            "`mean`)",
        ),
        (
            "check_cfg",
            lambda eps_cond, eps_uncond, guidance_scale: (
                0.18215 * checks.reference_cfg(eps_cond, eps_uncond, guidance_scale)
            ),
            "Stable Diffusion's scale factor 0.18215",
        ),
    ],
)
def test_a_constant_factor_is_named(check, answer, named):
    text = message(check, answer)
    assert named in text, text


def slerp_without_sin(z_0, z_1, alpha):
    a, b = z_0.flatten(1), z_1.flatten(1)  # (B, D)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))  # (B,)
    theta = cos.clamp(-1, 1).acos().view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return torch.sin((1 - alpha) * theta) * z_0 + torch.sin(alpha * theta) * z_1


@pytest.mark.parametrize("how", ["sum", "mean"])
def test_one_number_where_one_per_item_belongs_is_named(how):
    text = message(
        "check_kl", lambda mean, logvar: getattr(checks.reference_kl(mean, logvar), how)()
    )
    assert f"the result is one number, the {how} of the 4 expected values" in text, text
    assert "shape (4,)" in text


def test_a_half_precision_result_is_named():
    text = message(
        "check_q_sample",
        lambda x_0, t, noise, alpha_bar: checks.reference_q_sample(x_0, t, noise, alpha_bar).half(),
    )
    assert "dtype torch.float16, expected torch.float32 like the inputs: cast back" in text, text


def test_a_factor_per_item_is_named():
    text = message(
        "check_slerp",
        lambda z_0, z_1, alpha: (
            checks.reference_slerp(z_0, z_1, alpha) * z_0.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        ),
    )
    assert "each item of the result is off by its own constant factor" in text, text
    assert "sin(theta)" in text
    text = message(
        "check_reparameterize",
        lambda mean, logvar, eps: (
            (mean + (0.5 * logvar).exp() * eps) * torch.arange(1.0, len(mean) + 1).view(-1, 1, 1, 1)
        ),
    )
    assert "off by its own constant factor (1, 2, " in text, text


def test_one_number_off_by_a_meaningless_factor_gets_both_values():
    text = message("check_hinge_d_loss", lambda logits_real, logits_fake: logits_real.mean() * 3)
    assert "times the expected" not in text and "returned " in text and "expected " in text
    text = message("check_scale_factor", lambda latents: 0.123)
    assert "returned 0.123, expected " in text, text


# ---- a time limit ----


def test_an_endless_loop_is_stopped_with_a_message():
    def endless(eps_cond, eps_uncond, guidance_scale):
        while True:
            pass

    start = time.monotonic()
    text = message("check_cfg", endless, time_limit=1.0)
    assert time.monotonic() - start < 10
    assert "stopped after 1 s (the check's time limit): an endless loop?" in text, text

    def slow(model, mean, std, y, *, generator, cond_drop_prob):
        while True:
            time.sleep(0.01)

    assert "stopped after 0.5 s" in message("check_training_step", slow, time_limit=0.5)


def test_the_time_limit_is_30_s_and_a_learners_except_does_not_swallow_it():
    assert checks.TIME_LIMIT == 30.0

    def catches_everything(x_0, t, noise, alpha_bar):
        while True:
            try:
                time.sleep(0.01)
            except Exception:  # the learner's own handler: not for the time limit
                pass

    assert "stopped after 0.3 s" in message("check_q_sample", catches_everything, time_limit=0.3)


def test_the_time_limit_works_off_the_main_thread_and_keeps_an_outer_timer():
    out = {}

    def run():
        out["passed"] = checks.check_slerp(checks.reference_slerp, quiet=True).passed
        out["text"] = message("check_slerp", lambda z_0, z_1, alpha: time.sleep(2), time_limit=0.3)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(20)
    assert out["passed"] and "stopped after 0.3 s" in out["text"]

    previous = signal.signal(signal.SIGALRM, lambda *a: None)
    signal.setitimer(signal.ITIMER_REAL, 100.0)  # e.g. a test runner's own timeout
    try:
        assert checks.check_cfg(checks.reference_cfg, quiet=True).passed
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < left <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- scalars: no "index ()" ----


@pytest.mark.parametrize(
    "check, answer",
    [
        ("check_training_step", step(loss_fn=F.l1_loss)),
        ("check_training_step", step(loss_fn=lambda a, b: 1.5 * F.mse_loss(a, b))),
        ("check_hinge_d_loss", lambda logits_real, logits_fake: logits_fake.mean() + 2.0),
        ("check_hinge_d_loss", lambda logits_real, logits_fake: torch.tensor(float("nan"))),
        ("check_scale_factor", lambda latents: float("inf")),
        ("check_vae_loss", vae_loss(total_fn=lambda total: total * 1.01)),
    ],
)
def test_scalar_messages_name_both_values(check, answer):
    text = message(check, answer)
    assert "returned " in text and "expected " in text, text


# ---- the device: the build checks run where the notebook's model is ----


def test_build_checks_run_on_the_device_they_are_given():
    seen = {}

    def spy(model, mean, std, y, *, generator, cond_drop_prob):
        seen["model"], seen["mean"] = model.device, mean.device
        return step()(model, mean, std, y, generator=generator, cond_drop_prob=cond_drop_prob)

    assert checks.check_training_step(spy, device="cpu", quiet=True).passed
    assert seen == {"model": torch.device("cpu"), "mean": torch.device("cpu")}


def test_the_default_device_is_the_gpu_when_there_is_one(monkeypatch):
    assert check_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_device() == torch.device("cpu")


def test_on_a_gpu_the_build_checks_turn_tf32_off_and_back_on():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions
    try:
        with exact_convolutions(torch.device("cuda")):  # flags only: no GPU needed
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
        with exact_convolutions(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32  # nothing changes on the CPU
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_the_vae_loss_check_puts_its_tensors_on_the_device():
    seen = set()

    def spy(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
        seen.update({x.device, recon.device, posterior.mean.device})
        return vae_loss()(
            x,
            recon,
            posterior,
            lpips=lpips,
            perceptual_weight=perceptual_weight,
            kl_weight=kl_weight,
        )

    assert checks.check_vae_loss(spy, device="cpu", quiet=True).passed
    assert seen == {torch.device("cpu")}


def test_tensors_on_two_devices_are_named():
    def two_devices(model, mean, std, y, *, generator, cond_drop_prob):
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            "cuda:0 and cpu!"
        )

    text = message("check_training_step", two_devices)
    assert "tensors on two devices" in text and ".to(model.device)" in text, text
    text = message(
        "check_q_sample",
        lambda x_0, t, noise, alpha_bar: (_ for _ in ()).throw(
            RuntimeError("Expected all tensors to be on the same device, cuda:0 and cpu")
        ),
    )
    assert "tensors on two devices" in text, text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_a_missing_to_device_fails_in_the_build_checks():
    assert checks.check_training_step(step(), quiet=True).passed
    text = message("check_training_step", step(to_device=False))
    assert "tensors on two devices" in text, text

    @torch.no_grad()
    def loop_on_the_cpu(model, y, z_T, *, steps, guidance_scale):
        timesteps = ddim_timesteps(model.schedule.num_steps, steps)
        null, z = torch.full_like(y, model.unet.cfg.num_classes), z_T
        for t, t_prev in zip(
            timesteps.tolist(), previous_timesteps(timesteps).tolist(), strict=True
        ):
            t_batch = torch.full((len(y),), t)  # on the CPU: device=z.device forgotten
            u, c = model.unet(z, t_batch, null), model.unet(z, t_batch, y)
            z = ddim_step(z, u + guidance_scale * (c - u), t, t_prev, model.schedule)
        return model.decode(z).clamp(-1, 1)

    result = checks.check_sampling_loop(loop_on_the_cpu, quiet=True)
    assert not result.passed and "device" in result.message, result.message


# ---- correct answers: the message the solved notebooks show ----


@pytest.mark.parametrize(
    "check, answer, shown",
    [
        (
            "check_q_sample",
            q_sample_as_in_the_notebook,
            "✅ q_sample: passed (3 seeded cases, largest error 0.0e+00)",
        ),
        (
            "check_training_step",
            step(),
            "✅ training_step: passed (3 seeded cases, largest error 0.0e+00)",
        ),
        (
            "check_reparameterize",
            lambda mean, logvar, eps: mean + torch.exp(0.5 * logvar) * eps,
            "✅ reparameterize: passed (3 seeded cases, largest error 0.0e+00)",
        ),
        ("check_vae_loss", vae_loss(), "✅ vae_loss: passed (3 seeded cases)"),
    ],
)
def test_correct_answers_pass_with_the_notebooks_message(check, answer, shown, capsys):
    assert getattr(checks, check)(answer).passed
    assert capsys.readouterr().out == shown + "\n"


# ---- the wrong answers the issue saw, now in the tables ----


@torch.no_grad()
def loop(*, guided=True, skip_last=False):
    def fn(model, y, z_T, *, steps, guidance_scale):
        timesteps = ddim_timesteps(model.schedule.num_steps, steps)
        null, z = torch.full_like(y, model.unet.cfg.num_classes), z_T
        pairs = list(zip(timesteps.tolist(), previous_timesteps(timesteps).tolist(), strict=True))
        for t, t_prev in pairs[:-1] if skip_last else pairs:
            t_batch = torch.full((len(y),), t, device=z.device)
            eps = model.unet(z, t_batch, y)
            if guided:
                u = model.unet(z, t_batch, null)
                eps = u + guidance_scale * (eps - u)
            z = ddim_step(z, eps, t, t_prev, model.schedule)
        return model.decode(z).clamp(-1, 1)

    return fn


@pytest.mark.parametrize(
    "check, answer, named",
    [
        (
            "check_training_step",
            step(z0_fn=lambda z: z / 0.7),  # tiny_ldm's scale factor
            "a division by the scale factor",
        ),
        ("check_training_step", step(t_high=-1), "t drawn from 0..T-2"),
        ("check_sampling_loop", loop(guided=False), "no guidance"),
        ("check_sampling_loop", loop(skip_last=True), "the last step skipped"),
        ("check_slerp", slerp_without_sin, "the division by sin(theta) left out"),
        (
            "check_training_step",
            step(z0_fn=lambda z: 0.18215 * z),
            "Stable Diffusion's 0.18215 instead of model.scale_factor",
        ),
    ],
)
def test_the_wrong_answers_seen_in_notebooks_are_named(check, answer, named):
    assert f"looks like {named}:" in message(check, answer)


def test_the_right_loop_passes():
    assert checks.check_sampling_loop(loop(), quiet=True).passed
