"""The training loop's hooks for the notebooks: the weight update as a named function
(optimizer_update, EMA.decay_at) a learner can rewrite, gradient clipping, build_unet, and watch."""

import math
from dataclasses import replace

import pytest
import torch
from run_helpers import TINY_LDM, TINY_VAE, ldm_run, vae_run

from ldm_course.config import VAEConfig
from ldm_course.infra.checkpoint import load_tensors
from ldm_course.training import train as train_module
from ldm_course.training.train import EMA, check_watch, optimizer_update
from ldm_course.unet import UNet
from ldm_course.vae import VAE


def tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(base_channels=4, norm_groups=4))


def linear_problem(seed: int = 0):
    """A 3 -> 2 linear model, Adam, and a loss whose gradient is large (norm >> 1)."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    loss = (100 * model(x)).pow(2).mean()
    return model, opt, loss


def test_optimizer_update_measures_the_global_gradient_norm_and_clips_to_it():
    model, opt, loss = linear_problem()
    (g_w, g_b) = torch.autograd.grad(loss, [model.weight, model.bias], retain_graph=True)
    expected = math.sqrt(g_w.pow(2).sum().item() + g_b.pow(2).sum().item())  # recomputed by hand
    before = model.weight.detach().clone()
    norm = optimizer_update(loss, model=model, optimizer=opt, ema=None, step=0, max_grad_norm=1.0)
    assert norm == pytest.approx(expected, rel=1e-5) and norm > 10
    clipped = math.sqrt(sum(p.grad.pow(2).sum().item() for p in model.parameters()))
    assert clipped == pytest.approx(1.0, rel=1e-5)  # rescaled to max_grad_norm
    assert not torch.equal(model.weight, before)  # and the step was taken


def test_optimizer_update_without_clipping_is_the_plain_adam_step():
    model, opt, loss = linear_problem()
    ref_model, ref_opt, ref_loss = linear_problem()
    optimizer_update(loss, model=model, optimizer=opt, ema=None, step=0, max_grad_norm=0.0)
    ref_opt.zero_grad()
    ref_loss.backward()
    ref_opt.step()
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), ref_model.parameters(), strict=True)
    )


def test_ema_decay_at_warms_up_then_holds_the_decay_and_update_follows_it():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(1000) == 0.5
    old = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=0)
    d = ema.decay_at(0)
    expected = d * old["weight"] + (1 - d) * model.weight.detach()
    assert torch.allclose(ema.shadow["weight"], expected)


def test_history_logs_the_grad_norm_and_clipping_changes_the_run(tmp_path):
    vae = tiny_vae()
    cfg = replace(TINY_LDM, steps=3)
    ldm_a, hist_a = ldm_run(tmp_path / "a", vae, cfg)
    assert len(hist_a["grad_norm"]) == 3 and all(g > 0 for g in hist_a["grad_norm"])
    small = min(hist_a["grad_norm"]) / 10
    ldm_b, hist_b = ldm_run(tmp_path / "b", vae, replace(cfg, max_grad_norm=small))
    assert hist_b["grad_norm"][0] == hist_a["grad_norm"][0]  # measured before clipping
    # Adam's first update is nearly invariant to the gradient's scale; later ones are not
    a, b = ldm_a.unet.state_dict(), ldm_b.unet.state_dict()
    assert hist_b["loss"][0] == hist_a["loss"][0]
    assert hist_b["grad_norm"][2] != hist_a["grad_norm"][2]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_negative_max_grad_norm_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"max_grad_norm=-1.0 is out of range.*>= 0"):
        vae_run(tmp_path / "r", replace(TINY_VAE, max_grad_norm=-1.0))


def test_update_fn_equal_to_optimizer_update_trains_the_same_weights(tmp_path):
    calls = []

    def mine(loss, *, model, optimizer, ema, step, max_grad_norm):
        calls.append(step)
        return optimizer_update(
            loss, model=model, optimizer=optimizer, ema=ema, step=step, max_grad_norm=max_grad_norm
        )

    vae = tiny_vae()
    ldm_a, hist_a = ldm_run(tmp_path / "a", vae)
    ldm_b, hist_b = ldm_run(tmp_path / "b", vae, update_fn=mine)
    a, b = ldm_a.unet.state_dict(), ldm_b.unet.state_dict()
    assert calls == [0, 1] and all(torch.equal(a[k], b[k]) for k in a)
    assert hist_a["grad_norm"] == hist_b["grad_norm"]


def test_update_fn_is_refused_in_fp16(tmp_path):
    def mine(loss, **kwargs):
        raise AssertionError("not called")

    cfg = replace(TINY_LDM, precision="fp16")
    with pytest.raises(ValueError, match=r"update_fn has no gradient scaler.*precision=bf16"):
        ldm_run(tmp_path / "r", tiny_vae(), cfg, update_fn=mine)


def test_build_unet_is_called_with_the_run_config_and_checked(tmp_path):
    seen = []

    def build(cfg):
        seen.append(cfg)
        return UNet(cfg)

    vae = tiny_vae()
    ldm_a, _ = ldm_run(tmp_path / "a", vae)
    ldm_b, _ = ldm_run(tmp_path / "b", vae, build_unet=build)
    assert seen == [ldm_a.unet.cfg]  # num_classes filled in from the data
    a, b = ldm_a.unet.state_dict(), ldm_b.unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # built inside the same seeded global RNG
    with pytest.raises(ValueError, match=r"build_unet returned a UNet with config.*UNet\(cfg"):
        ldm_run(tmp_path / "c", vae, build_unet=lambda cfg: UNet(replace(cfg, base_channels=8)))
    with pytest.raises(ValueError, match=r"build_unet returned Linear"):
        ldm_run(tmp_path / "d", vae, build_unet=lambda cfg: torch.nn.Linear(1, 1))


@pytest.mark.parametrize(
    "watch_at, match",
    [((0, 3), r"3 is not a step in 0..2"), ((-1,), r"-1 is not"), ((1.5,), r"1.5 is not")],
)
def test_watch_at_outside_the_run_is_refused(watch_at, match):
    with pytest.raises(ValueError, match=match + r".*whole numbers in that range"):
        check_watch(lambda s, m: None, watch_at, 2)


def test_watch_at_without_watch_is_refused():
    with pytest.raises(ValueError, match=r"watch_at lists steps but watch is None"):
        check_watch(None, (1,), 2)


def test_watch_sees_the_ema_model_in_eval_mode_and_changes_nothing(tmp_path):
    seen = []

    def watch(step, ldm):
        seen.append((step, ldm.training, ldm.unet.training, torch.is_grad_enabled()))
        seen.append(ldm.unet.state_dict()["conv_in.weight"].clone())
        torch.randn(3)  # draws from the global RNG must not leak into the run

    vae = tiny_vae()
    cfg = replace(TINY_LDM, steps=3, unet=replace(TINY_LDM.unet, dropout=0.1))
    ldm_a, hist_a = ldm_run(tmp_path / "a", vae, cfg)
    ldm_b, hist_b = ldm_run(tmp_path / "b", vae, cfg, watch=watch, watch_at=(0, 2, 3))
    assert [s[0] for s in seen[::2]] == [0, 2, 3]
    assert all(s[1:] == (False, False, False) for s in seen[::2])
    assert torch.equal(seen[-1], ldm_a.unet.state_dict()["conv_in.weight"])  # EMA at the end
    a, b = ldm_a.unet.state_dict(), ldm_b.unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert hist_a["loss"] == hist_b["loss"]
    for name in ("model.safetensors", "checkpoint.safetensors"):
        ta, tb = load_tensors(tmp_path / "a" / name)[0], load_tensors(tmp_path / "b" / name)[0]
        assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_watch_of_a_resumed_run_sees_only_the_steps_after_the_checkpoint(tmp_path):
    """A run killed right after step 1's checkpoint (before its watch), then resumed."""
    seen = []
    cfg = replace(TINY_VAE, steps=3, checkpoint_every=1)
    original = train_module.save_checkpoint

    def kill_after_step_1(loop, path, step, *args, **kwargs):
        original(loop, path, step, *args, **kwargs)
        if step == 1:
            raise KeyboardInterrupt

    def watch(step, model):
        seen.append(step)

    train_module.save_checkpoint = kill_after_step_1
    try:
        with pytest.raises(KeyboardInterrupt):
            vae_run(tmp_path / "s", cfg, watch=watch, watch_at=(0, 1, 2, 3))
    finally:
        train_module.save_checkpoint = original
    assert seen == [0]
    vae_run(tmp_path / "s", cfg, resume=True, watch=watch, watch_at=(0, 1, 2, 3))
    assert seen == [0, 2, 3]
