"""ldm_course.schedules, checked against diffusers' DDPMScheduler and against closed forms."""

import dataclasses
import math

import pytest
import torch
from diffusers import DDPMScheduler

from ldm_course.schedules import NoiseSchedule, extract, make_schedule, predict_x0, q_sample

# our kind -> (diffusers beta_schedule, diffusers kwargs giving the same defaults)
DIFFUSERS_KINDS = {
    "linear": ("linear", {"beta_start": 1e-4, "beta_end": 0.02}),
    "scaled_linear": ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    "cosine": ("squaredcos_cap_v2", {}),
}
KINDS = list(DIFFUSERS_KINDS)


def diffusers_ddpm(kind: str, num_steps: int = 1000) -> DDPMScheduler:
    beta_schedule, kwargs = DIFFUSERS_KINDS[kind]
    return DDPMScheduler(num_train_timesteps=num_steps, beta_schedule=beta_schedule, **kwargs)


@pytest.mark.parametrize("num_steps", [1000, 50])
@pytest.mark.parametrize("kind", KINDS)
def test_alpha_bar_matches_diffusers(kind, num_steps):
    ours = make_schedule(kind, num_steps)
    theirs = diffusers_ddpm(kind, num_steps)  # float32, so agreement is to float32 rounding
    torch.testing.assert_close(ours.alpha_bar, theirs.alphas_cumprod.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.betas, theirs.betas.double(), rtol=0, atol=1e-7)


def test_custom_beta_range_matches_diffusers():
    ours = make_schedule("linear", 200, beta_start=1e-3, beta_end=0.05)
    theirs = DDPMScheduler(num_train_timesteps=200, beta_start=1e-3, beta_end=0.05)
    torch.testing.assert_close(ours.alpha_bar, theirs.alphas_cumprod.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_properties(kind):
    s = make_schedule(kind)
    T = 1000
    assert isinstance(s, NoiseSchedule) and s.kind == kind and s.num_steps == T
    for values in (s.betas, s.alphas, s.alpha_bar, s.alpha_bar_prev, s.snr):
        assert values.dtype == torch.float64 and values.shape == (T,)
    assert (s.betas > 0).all() and (s.betas <= 0.999).all()
    torch.testing.assert_close(s.alphas, 1 - s.betas, rtol=0, atol=0)
    # alpha_bar as a sum of logs, not a running product
    torch.testing.assert_close(s.alpha_bar, torch.exp(torch.cumsum(torch.log1p(-s.betas), 0)))
    assert (s.alpha_bar.diff() < 0).all() and (s.alpha_bar > 0).all() and s.alpha_bar[0] < 1
    assert (s.snr.diff() < 0).all()
    torch.testing.assert_close(s.snr, s.alpha_bar / (1 - s.alpha_bar))
    assert s.alpha_bar_prev[0] == 1.0
    torch.testing.assert_close(s.alpha_bar_prev[1:], s.alpha_bar[:-1], rtol=0, atol=0)


def test_linear_end_points_and_scaled_linear_is_linear_in_sqrt_beta():
    linear = make_schedule("linear")
    assert linear.betas[0].item() == pytest.approx(1e-4) and linear.betas[
        -1
    ].item() == pytest.approx(0.02)
    scaled = make_schedule("scaled_linear")
    root = scaled.betas.sqrt()
    torch.testing.assert_close(
        root.diff(), torch.full((999,), root.diff()[0].item(), dtype=torch.float64)
    )
    assert scaled.betas[0].item() == pytest.approx(0.00085)
    assert scaled.betas[-1].item() == pytest.approx(0.012)


def test_cosine_alpha_bar_is_eq_17_until_the_clip():
    """alpha_bar_t = f(t + 1) / f(0) (our t is the paper's t + 1) wherever no beta was clipped."""
    T, s = 1000, 0.008
    sched = make_schedule("cosine", T)
    f = [math.cos((i / T + s) / (1 + s) * math.pi / 2) ** 2 for i in range(T + 1)]
    expected = torch.tensor([f[t + 1] / f[0] for t in range(T)], dtype=torch.float64)
    unclipped = sched.betas < 0.999
    assert unclipped[:-1].all() and not unclipped[-1]  # only the last beta hits the cap at T = 1000
    torch.testing.assert_close(sched.alpha_bar[:-1], expected[:-1], rtol=1e-12, atol=1e-15)


def test_num_steps_one():
    s = make_schedule("linear", 1)
    assert s.betas.tolist() == [1e-4] and s.alpha_bar.shape == (1,)


def test_schedule_is_frozen():
    s = make_schedule("linear", 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.num_steps = 5


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("quadratic",), {}, "linear.*scaled_linear.*cosine"),
        (("linear", 0), {}, "num_steps"),
        (("linear", 10.0), {}, "num_steps"),
        (("cosine",), {"beta_start": 1e-4}, "beta_start and beta_end"),
        (("cosine",), {"beta_end": 0.02}, "beta_start and beta_end"),
        (("linear",), {"beta_start": 0.02, "beta_end": 0.01}, "beta_start < beta_end"),
        (("linear",), {"beta_start": 0.0}, "beta_start < beta_end"),
        (("scaled_linear",), {"beta_end": 1.0}, "beta_start < beta_end"),
    ],
)
def test_make_schedule_rejects_bad_inputs(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(*args, **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_q_sample_matches_diffusers_add_noise(kind):
    gen = torch.Generator().manual_seed(0)
    x_0 = torch.randn(6, 3, 8, 8, generator=gen)
    noise = torch.randn(6, 3, 8, 8, generator=gen)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    ours = q_sample(x_0, t, noise, make_schedule(kind))
    theirs = diffusers_ddpm(kind).add_noise(x_0, noise, t)
    assert ours.dtype == x_0.dtype and ours.shape == x_0.shape
    # diffusers forms 1 - alpha_bar in float32; at t = 0 that cancellation costs ~5e-6 absolute
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_q_sample_closed_form_float64():
    sched = make_schedule("scaled_linear")
    gen = torch.Generator().manual_seed(1)
    x_0 = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    noise = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    t = torch.tensor([5, 600, 999])
    x_t = q_sample(x_0, t, noise, sched)
    assert x_t.dtype == torch.float64
    for i, step in enumerate(t.tolist()):
        a = sched.alpha_bar[step].item()
        expected = math.sqrt(a) * x_0[i] + math.sqrt(1 - a) * noise[i]
        torch.testing.assert_close(x_t[i], expected, rtol=1e-14, atol=1e-14)


def test_q_sample_works_for_any_rank():
    sched = make_schedule("linear", 10)
    x_0 = torch.ones(4, 7)  # (B, D): e.g. a toy 2-D dataset
    x_t = q_sample(x_0, torch.tensor([0, 3, 6, 9]), torch.zeros(4, 7), sched)
    torch.testing.assert_close(x_t[:, 0], sched.alpha_bar[[0, 3, 6, 9]].sqrt().float())


@pytest.mark.parametrize(
    "t, noise_shape, match",
    [
        (torch.tensor([0, 10]), (2, 3, 4, 4), r"\[0, 9\]"),
        (torch.tensor([-1, 0]), (2, 3, 4, 4), r"\[0, 9\]"),
        (torch.tensor([0.0, 1.0]), (2, 3, 4, 4), "integer"),
        (torch.tensor([0, 1, 2]), (2, 3, 4, 4), r"shape \(2,\)"),
        (torch.tensor(3), (2, 3, 4, 4), r"shape \(2,\)"),
        (torch.tensor([0, 1]), (2, 3, 4, 5), "noise must have shape"),
    ],
)
def test_q_sample_rejects_bad_inputs(t, noise_shape, match):
    sched = make_schedule("linear", 10)
    with pytest.raises(ValueError, match=match):
        q_sample(torch.zeros(2, 3, 4, 4), t, torch.zeros(noise_shape), sched)


def test_extract_shapes_dtype_and_device():
    sched = make_schedule("linear", 10)
    x = torch.zeros(3, 2, 5, 5, dtype=torch.float16)
    picked = extract(sched.alpha_bar, torch.tensor([0, 4, 9]), x)
    assert picked.shape == (3, 1, 1, 1) and picked.dtype == torch.float16
    assert picked.device == x.device
    expected = sched.alpha_bar[[0, 4, 9]].half()
    torch.testing.assert_close(picked.flatten(), expected)
    scalar = extract(sched.alpha_bar, 4, x)
    assert scalar.shape == () and scalar.item() == sched.alpha_bar[4].half().item()


@pytest.mark.parametrize("kind", KINDS)
def test_predict_x0_inverts_q_sample(kind):
    sched = make_schedule(kind)
    gen = torch.Generator().manual_seed(2)
    x_0 = torch.randn(4, 3, 4, 4, generator=gen, dtype=torch.float64)
    noise = torch.randn(4, 3, 4, 4, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 990])  # cosine's last step has alpha_bar ~ 1e-9: x_0 is lost
    x_t = q_sample(x_0, t, noise, sched)
    torch.testing.assert_close(predict_x0(x_t, noise, t, sched), x_0, rtol=0, atol=1e-9)
    # an int t means the same step for the whole batch
    x_t = q_sample(x_0, torch.full((4,), 300), noise, sched)
    torch.testing.assert_close(predict_x0(x_t, noise, 300, sched), x_0, rtol=0, atol=1e-12)


def test_predict_x0_rejects_bad_inputs():
    sched = make_schedule("linear", 10)
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        predict_x0(x, x, 10, sched)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        predict_x0(x, x, torch.tensor([3, 12]), sched)
    with pytest.raises(ValueError, match="eps must have"):
        predict_x0(x, torch.zeros(2, 3, 4), 3, sched)
