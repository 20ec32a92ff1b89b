"""train_ldm's hook for the notebooks: a learner's training step (notebook 04's exercise, used by 05
too) in place of LatentDiffusion.training_step."""

from dataclasses import replace

import pytest
import torch
from run_helpers import TINY_LDM, ldm_run

from ldm_course.config import VAEConfig
from ldm_course.infra.distributed import World
from ldm_course.vae import VAE

CFG = replace(TINY_LDM, steps=4, cond_drop_prob=0.5)  # conditional, some labels dropped


def tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(base_channels=4, norm_groups=4))


def through_hook(model, mean, std, y, *, generator, cond_drop_prob):
    """The built-in step, called the way train_ldm calls a learner's step."""
    return model.training_step(mean, std, y, generator=generator, cond_drop_prob=cond_drop_prob)


def test_step_fn_equal_to_training_step_trains_the_same_weights_and_history(tmp_path):
    vae = tiny_vae()
    ldm_a, hist_a = ldm_run(tmp_path / "a", vae, CFG)
    ldm_b, hist_b = ldm_run(tmp_path / "b", vae, CFG, step_fn=through_hook)
    a, b = ldm_a.unet.state_dict(), ldm_b.unet.state_dict()  # the EMA weights
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert hist_a["loss"] == hist_b["loss"] and len(hist_a["loss"]) == 4


def test_step_fn_trains_with_its_own_step(tmp_path):
    calls = []

    def doubled(model, mean, std, y, *, generator, cond_drop_prob):
        calls.append((mean.shape, None if y is None else y.shape, cond_drop_prob))
        return 2 * through_hook(
            model, mean, std, y, generator=generator, cond_drop_prob=cond_drop_prob
        )

    vae = tiny_vae()
    _, hist_a = ldm_run(tmp_path / "a", vae, CFG)
    _, hist_b = ldm_run(tmp_path / "b", vae, CFG, step_fn=doubled)
    assert len(calls) == 4 and calls[0][2] == 0.5 and calls[0][1] == (CFG.batch_size,)
    assert hist_b["loss"][0] == pytest.approx(2 * hist_a["loss"][0], rel=1e-6)  # same first step


@pytest.mark.parametrize(
    "setting, world, match",
    [
        ({"min_snr_gamma": 5.0}, None, r"min_snr_gamma=5.0.*set min_snr_gamma=0"),
        ({"flip": True}, None, r"flip=True.*set flip=False"),
        ({}, World(rank=0, size=2), r"world size is 2.*train on one device"),
    ],
)
def test_step_fn_refuses_settings_it_cannot_follow(tmp_path, setting, world, match):
    with pytest.raises(ValueError, match=match):
        ldm_run(
            tmp_path / "r", tiny_vae(), replace(CFG, **setting), step_fn=through_hook, world=world
        )
    assert not (tmp_path / "r").exists()  # refused before anything is written
