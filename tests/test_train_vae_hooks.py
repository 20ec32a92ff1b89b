"""train_vae's hooks for the notebooks: a learner's loss function (notebook 01's exercise, used by
05 too) and KL warm-up (Bowman et al. 2016, sec. 3.1)."""

from dataclasses import replace

import pytest
import torch
from run_helpers import TINY_VAE, vae_run

from ldm_course.infra.limits import check_config
from ldm_course.training.train_vae import kl_weight_at
from ldm_course.vae import vae_loss

CFG = replace(TINY_VAE, steps=4, kl_weight=0.01)  # a KL weight that moves the weights visibly


def vae_loss_through_hook(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
    """The built-in loss, called the way train_vae calls a learner's loss."""
    return vae_loss(
        x, recon, posterior, lpips=lpips, perceptual_weight=perceptual_weight, kl_weight=kl_weight
    )


def tensor_terms(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
    """A learner's loss that leaves its terms as 0-d tensors, "total" not among them."""
    rec = (x - recon).abs().mean()
    kl = posterior.kl().mean() / x[0].numel()
    return rec + kl_weight * kl, {"recon": rec, "kl": kl}


@pytest.mark.parametrize("loss_fn", [vae_loss_through_hook, tensor_terms])
def test_loss_fn_equal_to_vae_loss_trains_the_same_weights_and_history(tmp_path, loss_fn):
    vae_a, hist_a = vae_run(tmp_path / "a", CFG)
    vae_b, hist_b = vae_run(tmp_path / "b", CFG, loss_fn=loss_fn)
    a, b = vae_a.state_dict(), vae_b.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(hist_a) == list(hist_b)  # same keys, same order: step, seconds, recon, kl, total
    for k in hist_a:
        if k != "seconds":
            assert hist_a[k] == hist_b[k], k
            assert all(type(v) is type(w) for v, w in zip(hist_a[k], hist_b[k], strict=True)), k


def test_loss_fn_trains_with_its_own_loss(tmp_path):
    def l1_doubled(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
        total, terms = vae_loss_through_hook(
            x,
            recon,
            posterior,
            lpips=lpips,
            perceptual_weight=perceptual_weight,
            kl_weight=kl_weight,
        )
        return 2 * total, terms

    vae_a, _ = vae_run(tmp_path / "a", CFG)
    vae_b, hist_b = vae_run(tmp_path / "b", CFG, loss_fn=l1_doubled)
    changed = [not torch.equal(v, vae_b.state_dict()[k]) for k, v in vae_a.state_dict().items()]
    assert any(changed)
    assert hist_b["total"][0] == pytest.approx(2 * (hist_b["recon"][0] + 0.01 * hist_b["kl"][0]))


@pytest.mark.parametrize(
    "setting, match",
    [
        ({"recon": "l2"}, r"recon='l2'.*set recon='l1'"),
        (
            {"perceptual_weight": 0.1, "perceptual_batch": 2},
            r"perceptual_batch=2.*perceptual_batch=0",
        ),
    ],
)
def test_loss_fn_refuses_settings_it_cannot_follow(tmp_path, setting, match):
    with pytest.raises(ValueError, match=match):
        vae_run(tmp_path / "r", replace(CFG, **setting), loss_fn=vae_loss_through_hook)
    assert not (tmp_path / "r").exists()  # refused before anything is written


def test_loss_fn_with_lpips_over_the_whole_batch_is_accepted():
    from ldm_course.training.train_vae import check_loss_fn

    for batch in (0, CFG.batch_size):
        check_loss_fn(replace(CFG, perceptual_weight=0.1, perceptual_batch=batch))


def test_loss_fn_missing_a_term_is_one_clear_error(tmp_path):
    def no_kl(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
        rec = (x - recon).abs().mean()
        return rec, {"recon": rec}

    with pytest.raises(ValueError, match=r"needs exactly \['recon', 'kl'\].*missing \['kl'\]"):
        vae_run(tmp_path / "r", CFG, loss_fn=no_kl)


def test_kl_weight_at_is_the_linear_ramp():
    for warmup in (1, 3, 10):
        for step in range(15):
            expected = 0.5 * min(1.0, (step + 1) / warmup)
            assert kl_weight_at(step, kl_weight=0.5, kl_warmup_steps=warmup) == expected
    assert kl_weight_at(0, kl_weight=0.5, kl_warmup_steps=4) == 0.125  # 0.5 * 1/4
    assert kl_weight_at(3, kl_weight=0.5, kl_warmup_steps=4) == 0.5  # full weight at step 3
    assert [kl_weight_at(s, kl_weight=0.5, kl_warmup_steps=0) for s in range(3)] == [0.5] * 3


def test_training_uses_the_warmed_up_kl_weight_at_every_step(tmp_path):
    seen = []

    def recording(x, recon, posterior, *, lpips, perceptual_weight, kl_weight):
        seen.append(kl_weight)
        return vae_loss_through_hook(
            x,
            recon,
            posterior,
            lpips=lpips,
            perceptual_weight=perceptual_weight,
            kl_weight=kl_weight,
        )

    cfg = replace(CFG, steps=6, kl_warmup_steps=4)
    _, history = vae_run(tmp_path / "r", cfg, loss_fn=recording)
    assert seen == [0.01 * min(1, (s + 1) / 4) for s in range(6)]  # 0.0025, 0.005, ... 0.01, 0.01
    # the built-in loss gets the same weights: its logged totals match recon + weight * kl
    _, built_in = vae_run(tmp_path / "b", cfg)
    for s, total, rec, kl in zip(
        built_in["step"], built_in["total"], built_in["recon"], built_in["kl"], strict=True
    ):
        assert total == pytest.approx(rec + seen[s - 1] * kl, rel=1e-6)


def test_negative_kl_warmup_steps_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"kl_warmup_steps=-1 is out of range.*>= 0"):
        check_config(replace(CFG, kl_warmup_steps=-1))
    with pytest.raises(ValueError, match=r"kl_warmup_steps=-1 is out of range"):
        vae_run(tmp_path / "r", replace(CFG, kl_warmup_steps=-1))
    assert not (tmp_path / "r").exists()
