"""ldm_course.samplers, checked against diffusers' DDPMScheduler / DDIMScheduler on identical
inputs, against the DDPM posterior, and against closed forms with an oracle noise predictor.

diffusers keeps alpha_bar in float32, and 1 - alpha_bar (or 1 - alpha_bar_t / alpha_bar_{t-1}) then
loses digits to cancellation. So each comparison runs twice: with diffusers given our float64
alpha_bar (isolates the step algebra and the random draws: agreement to rounding), and with stock
diffusers (agreement within STOCK_ATOL, the measured float32 schedule error).
"""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from ldm_course.samplers import (
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
    previous_timesteps,
)
from ldm_course.schedules import NoiseSchedule, make_schedule, predict_x0

SHAPE = (2, 3, 8, 8)
DIFFUSERS_KINDS = {
    "linear": ("linear", {"beta_start": 1e-4, "beta_end": 0.02}),
    "scaled_linear": ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    "cosine": ("squaredcos_cap_v2", {}),
}
KINDS = list(DIFFUSERS_KINDS)
# measured max |ours - stock diffusers| over all t: 3e-4, 4e-5, 1.1e-3 (float32 alpha_bar there)
STOCK_ATOL = {"linear": 1e-3, "scaled_linear": 1e-4, "cosine": 2e-3}


def diffusers_kwargs(kind: str, num_steps: int = 1000) -> dict:
    beta_schedule, kwargs = DIFFUSERS_KINDS[kind]
    return dict(
        num_train_timesteps=num_steps, beta_schedule=beta_schedule, clip_sample=False, **kwargs
    )


def with_alpha_bar(scheduler, schedule: NoiseSchedule):
    """Give a diffusers scheduler our float64 alpha_bar, so that only the step algebra differs."""
    scheduler.alphas_cumprod = schedule.alpha_bar.clone()
    return scheduler


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def toy_eps_fn(x: torch.Tensor, t_batch: torch.Tensor) -> torch.Tensor:
    """A deterministic, nonlinear stand-in for a U-Net."""
    return 0.8 * torch.tanh(x) + 0.001 * t_batch.view(-1, 1, 1, 1).float()


def oracle_eps_fn(x_0: torch.Tensor, alpha_bar: torch.Tensor):
    """eps_fn that knows x_0: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""

    def eps_fn(x_t: torch.Tensor, t_batch: torch.Tensor) -> torch.Tensor:
        a = alpha_bar[t_batch].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - a.sqrt() * x_0) / (1 - a).sqrt()

    return eps_fn


# ----------------------------------------------------------------------------- DDPM step


@pytest.mark.parametrize("t", [0, 1, 10, 500, 999])
@pytest.mark.parametrize("kind", KINDS)
def test_ddpm_step_matches_diffusers(kind, t):
    sched = make_schedule(kind)
    kwargs = dict(diffusers_kwargs(kind), variance_type="fixed_small")
    exact = with_alpha_bar(DDPMScheduler(**kwargs), sched)
    x_t, eps = randn(*SHAPE, seed=1), randn(*SHAPE, seed=2)
    # diffusers draws its noise as torch.randn(shape, generator=...); hand ours the same noise
    ours = ddpm_step(x_t, eps, t, sched, noise=randn(*SHAPE, seed=3))
    out = exact.step(eps, t, x_t, generator=gen(3))
    torch.testing.assert_close(ours, out.prev_sample, rtol=0, atol=1e-6)
    torch.testing.assert_close(predict_x0(x_t, eps, t, sched), out.pred_original_sample)
    # our generator path draws exactly that noise
    torch.testing.assert_close(
        ddpm_step(x_t, eps, t, sched, generator=gen(3)), ours, rtol=0, atol=0
    )
    # in float64 both sides draw float64 noise from the same seed
    x64, eps64 = x_t.double(), eps.double()
    ours64 = ddpm_step(x64, eps64, t, sched, generator=gen(3))
    theirs64 = exact.step(eps64, t, x64, generator=gen(3)).prev_sample
    torch.testing.assert_close(ours64, theirs64, rtol=0, atol=1e-11)
    # stock diffusers, float32 schedule
    stock = DDPMScheduler(**kwargs).step(eps, t, x_t, generator=gen(3)).prev_sample
    torch.testing.assert_close(ours, stock, rtol=0, atol=STOCK_ATOL[kind])


def test_ddpm_step_at_t0_returns_pred_x0_and_draws_nothing():
    sched = make_schedule("scaled_linear")
    x_t, eps = (
        randn(*SHAPE, seed=1, dtype=torch.float64),
        randn(*SHAPE, seed=2, dtype=torch.float64),
    )
    generator = gen(0)
    state = generator.get_state()
    ours = ddpm_step(x_t, eps, 0, sched, generator=generator)
    assert torch.equal(generator.get_state(), state)
    a = sched.alpha_bar[0].item()
    torch.testing.assert_close(ours, (x_t - (1 - a) ** 0.5 * eps) / a**0.5, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ddpm_step(x_t, eps, 0, sched, noise=torch.ones_like(x_t)), ours)


@pytest.mark.parametrize("bad_t", [-1, 1000, 3.0, True, torch.tensor(3.0), torch.tensor([3, 4])])
def test_ddpm_step_rejects_bad_t(bad_t):
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        ddpm_step(x, x, bad_t, make_schedule("linear"))


def test_steps_accept_entries_of_a_timestep_grid():
    """Iterating over ddim_timesteps gives 0-d long tensors; they mean the same as python ints."""
    sched = make_schedule("linear")
    x, eps, noise = randn(*SHAPE, seed=1), randn(*SHAPE, seed=2), randn(*SHAPE, seed=3)
    grid = ddim_timesteps(1000, 10)  # (10,)
    t, t_prev = grid[3], grid[4]
    assert torch.equal(
        ddim_step(x, eps, t, t_prev, sched, eta=0.5, noise=noise),
        ddim_step(x, eps, int(t), int(t_prev), sched, eta=0.5, noise=noise),
    )
    assert torch.equal(
        ddpm_step(x, eps, t, sched, noise=noise), ddpm_step(x, eps, int(t), sched, noise=noise)
    )


def test_ddpm_step_rejects_bad_noise_shape():
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="noise must have shape"):
        ddpm_step(x, x, 5, make_schedule("linear"), noise=torch.zeros(2, 3, 8))


# ----------------------------------------------------------------------------- DDIM step

# (t, t_prev, n): diffusers' step after set_timesteps(n) goes to t - 1000 // n (< 0: the final step)
DDIM_PAIRS = [
    (999, 998, 1000),
    (980, 960, 50),
    (500, 400, 10),
    (20, 0, 50),
    (0, -1, 50),
    (19, -1, 50),
    (900, -1, 1),
]


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("t, t_prev, n", DDIM_PAIRS)
@pytest.mark.parametrize("kind", KINDS)
def test_ddim_step_matches_diffusers(kind, t, t_prev, n, eta):
    sched = make_schedule(kind)
    exact = with_alpha_bar(DDIMScheduler(**diffusers_kwargs(kind), set_alpha_to_one=True), sched)
    stock = DDIMScheduler(**diffusers_kwargs(kind), set_alpha_to_one=True)
    exact.set_timesteps(n)
    stock.set_timesteps(n)
    x_t, eps, noise = randn(*SHAPE, seed=1), randn(*SHAPE, seed=2), randn(*SHAPE, seed=3)
    ours = ddim_step(x_t, eps, t, t_prev, sched, eta=eta, noise=noise)
    out = exact.step(eps, t, x_t, eta=eta, variance_noise=noise)
    torch.testing.assert_close(ours, out.prev_sample, rtol=0, atol=1e-6)
    x64, eps64, noise64 = x_t.double(), eps.double(), noise.double()
    ours64 = ddim_step(x64, eps64, t, t_prev, sched, eta=eta, noise=noise64)
    theirs64 = exact.step(eps64, t, x64, eta=eta, variance_noise=noise64).prev_sample
    torch.testing.assert_close(ours64, theirs64, rtol=0, atol=1e-12)
    theirs_stock = stock.step(eps, t, x_t, eta=eta, variance_noise=noise).prev_sample
    torch.testing.assert_close(ours, theirs_stock, rtol=0, atol=STOCK_ATOL[kind])


@pytest.mark.parametrize("t, t_prev, n", [(980, 960, 50), (0, -1, 50)])
def test_ddim_step_generator_path_matches_diffusers(t, t_prev, n):
    sched = make_schedule("scaled_linear")
    theirs = with_alpha_bar(DDIMScheduler(**diffusers_kwargs("scaled_linear")), sched)
    theirs.set_timesteps(n)
    x_t, eps = randn(*SHAPE, seed=1), randn(*SHAPE, seed=2)
    out = theirs.step(eps, t, x_t, eta=1.0, generator=gen(7))
    ours_gen = gen(7)
    ours = ddim_step(x_t, eps, t, t_prev, sched, eta=1.0, generator=ours_gen)
    torch.testing.assert_close(ours, out.prev_sample, rtol=0, atol=1e-6)
    # a noise tensor is drawn even at the final step (sigma_t = 0), as in diffusers
    assert not torch.equal(ours_gen.get_state(), gen(7).get_state())


def test_ddim_eta0_draws_nothing():
    generator = gen(0)
    state = generator.get_state()
    x = randn(*SHAPE, seed=1)
    ddim_step(x, x, 500, 400, make_schedule("linear"), eta=0.0, generator=generator)
    assert torch.equal(generator.get_state(), state)


@pytest.mark.parametrize("kind", KINDS)
def test_ddim_eta1_one_step_is_the_ddpm_posterior(kind):
    """eta = 1, t_prev = t - 1: sigma_t^2 = beta_tilde_t and the same mean (DDIM section 4.1)."""
    sched = make_schedule(kind)
    x_t = randn(*SHAPE, seed=1, dtype=torch.float64)
    eps = randn(*SHAPE, seed=2, dtype=torch.float64)
    zeros, ones = torch.zeros_like(x_t), torch.ones_like(x_t)
    for t in [0, 1, 2, 100, 500, 998, 999]:
        ddim_mean = ddim_step(x_t, eps, t, t - 1, sched, eta=1.0, noise=zeros)
        ddpm_mean = ddpm_step(x_t, eps, t, sched, noise=zeros)
        torch.testing.assert_close(ddim_mean, ddpm_mean, rtol=1e-10, atol=1e-10)
        sigma_t = ddim_step(x_t, eps, t, t - 1, sched, eta=1.0, noise=ones) - ddim_mean
        beta_tilde = 0.0
        if t > 0:  # beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, DDPM eq. 7
            ab, ab_prev = sched.alpha_bar[t].item(), sched.alpha_bar[t - 1].item()
            beta_tilde = (1 - ab_prev) / (1 - ab) * sched.betas[t].item()
        torch.testing.assert_close(
            sigma_t**2, torch.full_like(x_t, beta_tilde), rtol=1e-8, atol=1e-14
        )


@pytest.mark.parametrize(
    "t, t_prev, eta, match",
    [
        (1000, 500, 0.0, r"t must be .*\[0, 999\]"),
        (500.0, 400, 0.0, r"t must be .*\[0, 999\]"),
        (500, 500, 0.0, r"t_prev must be .*\[-1, 499\]"),
        (500, -2, 0.0, r"t_prev must be .*\[-1, 499\]"),
        (500, 400, -0.1, r"eta must lie in \[0, 1\]"),
        (500, 400, 1.5, r"eta must lie in \[0, 1\]"),
    ],
)
def test_ddim_step_rejects_bad_inputs(t, t_prev, eta, match):
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match=match):
        ddim_step(x, x, t, t_prev, make_schedule("linear"), eta=eta)


# ----------------------------------------------------------------------------- DDIM timesteps


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("n", [1, 10, 20, 50, 100, 250, 1000])
def test_ddim_timesteps_match_diffusers(n, spacing):
    theirs = DDIMScheduler(timestep_spacing=spacing, steps_offset=0)
    theirs.set_timesteps(n)
    ours = ddim_timesteps(1000, n, spacing=spacing)
    assert ours.dtype == torch.long
    assert torch.equal(ours, theirs.timesteps)
    # for these n, diffusers' own t_prev = t - T // n is the next entry of the grid
    expected_prev = (theirs.timesteps - 1000 // n).clamp(min=-1)
    assert torch.equal(previous_timesteps(ours), expected_prev)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_timesteps_properties(spacing):
    for n in range(1, 1001, 7):
        ts = ddim_timesteps(1000, n, spacing=spacing)
        assert ts.shape == (n,) and (ts.diff() < 0).all() and ts.min() >= 0 and ts.max() <= 999
        assert ts[0] == 999 if spacing == "trailing" else ts[-1] == 0
    assert previous_timesteps(torch.tensor([7, 4, 1])).tolist() == [4, 1, -1]


@pytest.mark.parametrize(
    "num_steps, spacing, match",
    [
        (1001, "leading", "num_steps <= num_train_steps"),
        (0, "leading", "1 <= num_steps"),
        (10, "linspace", "leading.*trailing"),
    ],
)
def test_ddim_timesteps_rejects_bad_inputs(num_steps, spacing, match):
    with pytest.raises(ValueError, match=match):
        ddim_timesteps(1000, num_steps, spacing=spacing)


# ----------------------------------------------------------------------------- sampling loops


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_eta0_with_oracle_follows_the_closed_form(spacing):
    """With the exact eps every DDIM step keeps pred_x0 = x_0 and eps = e, the noise implied by
    x_T: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) e at each visited t; x_0 at the end."""
    sched = make_schedule("scaled_linear")
    x_0 = randn(*SHAPE, seed=10)
    eps_fn = oracle_eps_fn(x_0, sched.alpha_bar)
    x_T = randn(*SHAPE, seed=11)
    t_first = int(ddim_timesteps(1000, 20, spacing=spacing)[0])
    e = eps_fn(x_T, torch.full((2,), t_first))
    calls = []

    def callback(i, t, x_t, pred_x0):
        calls.append((i, t))
        a = sched.alpha_bar[t].item()
        torch.testing.assert_close(x_t, a**0.5 * x_0 + (1 - a) ** 0.5 * e, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(pred_x0, x_0, rtol=1e-3, atol=1e-3)

    out = ddim_sample(
        eps_fn,
        SHAPE,
        sched,
        num_steps=20,
        spacing=spacing,
        x_T=x_T,
        callback=callback,
        progress=False,
    )
    torch.testing.assert_close(out, x_0, rtol=1e-4, atol=1e-4)
    assert [i for i, _ in calls] == list(range(20))
    assert [t for _, t in calls] == ddim_timesteps(1000, 20, spacing=spacing).tolist()


def test_ddpm_sample_with_oracle_returns_x0():
    sched = make_schedule("linear", 50)
    x_0 = randn(*SHAPE, seed=10)
    calls = []
    out = ddpm_sample(
        oracle_eps_fn(x_0, sched.alpha_bar),
        SHAPE,
        sched,
        generator=gen(0),
        callback=lambda *a: calls.append(a[:2]),
        progress=False,
    )
    torch.testing.assert_close(out, x_0, rtol=1e-5, atol=1e-5)
    assert calls == [(i, 49 - i) for i in range(50)]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddpm_sample_matches_a_diffusers_loop(kind):
    """Same seed, same eps_fn: our loop and a diffusers loop draw the same noise at the same t."""
    sched = make_schedule(kind, 50)
    theirs = with_alpha_bar(DDPMScheduler(**diffusers_kwargs(kind, 50)), sched)
    theirs_gen = gen(5)
    x = torch.randn(SHAPE, generator=theirs_gen)
    for t in theirs.timesteps.tolist():
        x = theirs.step(toy_eps_fn(x, torch.full((2,), t)), t, x, generator=theirs_gen).prev_sample
    ours = ddpm_sample(toy_eps_fn, SHAPE, sched, generator=gen(5), progress=False)
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sample_matches_a_diffusers_loop(eta, spacing):
    sched = make_schedule("scaled_linear")
    kwargs = dict(diffusers_kwargs("scaled_linear"), timestep_spacing=spacing)
    theirs = with_alpha_bar(DDIMScheduler(**kwargs), sched)
    theirs.set_timesteps(10)
    theirs_gen = gen(5)
    x = torch.randn(SHAPE, generator=theirs_gen)
    for t in theirs.timesteps.tolist():
        eps = toy_eps_fn(x, torch.full((2,), t))
        x = theirs.step(eps, t, x, eta=eta, generator=theirs_gen).prev_sample
    ours = ddim_sample(
        toy_eps_fn,
        SHAPE,
        sched,
        num_steps=10,
        eta=eta,
        spacing=spacing,
        generator=gen(5),
        progress=False,
    )
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


def test_loops_are_reproducible_and_keep_dtype():
    sched = make_schedule("linear", 20)

    def run(seed, dtype=torch.float32, **kwargs):
        return ddim_sample(
            toy_eps_fn,
            SHAPE,
            sched,
            num_steps=5,
            eta=0.5,
            generator=gen(seed),
            dtype=dtype,
            progress=False,
            **kwargs,
        )

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    assert run(0, dtype=torch.float64).dtype == torch.float64
    a = ddpm_sample(toy_eps_fn, SHAPE, sched, generator=gen(0), progress=False)
    b = ddpm_sample(toy_eps_fn, SHAPE, sched, generator=gen(0), progress=False)
    assert torch.equal(a, b) and a.shape == SHAPE


def test_loops_show_progress_by_default(capsys):
    sched = make_schedule("linear", 10)
    ddim_sample(toy_eps_fn, SHAPE, sched, num_steps=3, generator=gen(0))
    assert "DDIM" in capsys.readouterr().err


def test_loops_reject_bad_inputs():
    sched = make_schedule("linear", 20)
    with pytest.raises(ValueError, match="num_steps <= num_train_steps"):
        ddim_sample(toy_eps_fn, SHAPE, sched, num_steps=21, progress=False)
    with pytest.raises(ValueError, match="eta must lie"):
        ddim_sample(toy_eps_fn, SHAPE, sched, num_steps=5, eta=-1.0, progress=False)
    with pytest.raises(ValueError, match="spacing must be one of"):
        ddim_sample(toy_eps_fn, SHAPE, sched, num_steps=5, spacing="linspace", progress=False)
    with pytest.raises(ValueError, match="x_T must have shape"):
        ddpm_sample(toy_eps_fn, SHAPE, sched, x_T=torch.zeros(1, 3, 8, 8), progress=False)


def test_ddpm_sample_steps_with_the_given_step_fn():
    schedule = make_schedule("linear", 20)
    seen = []

    def step_fn(x_t, eps, t, schedule, *, generator):
        seen.append(t)
        return ddpm_step(x_t, eps, t, schedule, generator=generator)

    def eps_fn(x, t):
        return 0.1 * x

    out = ddpm_sample(
        eps_fn,
        (2, 3, 4, 4),
        schedule,
        generator=torch.Generator().manual_seed(0),
        progress=False,
        step_fn=step_fn,
    )
    ref = ddpm_sample(
        eps_fn, (2, 3, 4, 4), schedule, generator=torch.Generator().manual_seed(0), progress=False
    )
    assert seen == list(range(19, -1, -1)) and torch.equal(out, ref)
