"""Issue 23, item 2: a run stopped right after its first checkpoint and resumed ends bit for bit
where the uninterrupted run ends, with every setting that draws random numbers or changes what a
step trains: U-Net dropout, flip augmentation, Min-SNR weights, fp16 with a gradient scaler, the
LPIPS term and freeze_encoder_at (the VAE). Every tensor of the checkpoint (weights, EMA, Adam's
moments), model.safetensors, the checkpoint's metadata and history.json are compared.

The stop is an exception raised after the first checkpoint is written (as test_precision does),
in this process: train_vae / train_ldm reseed torch's global RNG on entry, so the resumed call
starts from the global state a fresh process would have. test_training kills real processes."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from run_helpers import TINY_LDM, TINY_VAE, tiny_data

from ldm_course.infra.checkpoint import load_tensors
from ldm_course.training import train as train_module
from ldm_course.training.train_ldm import train_ldm
from ldm_course.training.train_vae import train_vae
from ldm_course.vae import VAE

STEPS, EVERY = 5, 2  # stopped after step 2, resumed for steps 3 to 5
VAE_BASE = replace(TINY_VAE, steps=STEPS, checkpoint_every=EVERY)
LDM_BASE = replace(TINY_LDM, steps=STEPS, checkpoint_every=EVERY)
DROPOUT = replace(TINY_LDM.unet, dropout=0.1)

CASES = {
    "dropout": replace(LDM_BASE, unet=DROPOUT),
    "flip": replace(LDM_BASE, flip=True),
    "min_snr": replace(LDM_BASE, min_snr_gamma=5.0),
    "fp16_ldm": replace(LDM_BASE, precision="fp16", unet=DROPOUT),
    "everything_ldm": replace(
        LDM_BASE, flip=True, min_snr_gamma=5.0, precision="fp16", unet=DROPOUT
    ),
    "lpips": replace(VAE_BASE, perceptual_weight=0.5, perceptual_batch=2),
    "fp16_vae": replace(VAE_BASE, precision="fp16"),
    "freeze_encoder_at": replace(VAE_BASE, freeze_encoder_at=3),  # frozen after the resume
}


class Stopped(Exception):
    pass


def frozen_vae() -> VAE:
    """A random VAE for train_ldm's latents, built without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return VAE(TINY_VAE.vae)


def train(cfg, run: Path, **kwargs):
    if hasattr(cfg, "unet"):
        return train_ldm(cfg, run, frozen_vae(), data=tiny_data(), progress=False, **kwargs)
    return train_vae(cfg, run, data=tiny_data(), progress=False, **kwargs)


def without_seconds(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "seconds"}


def run_record(run: Path) -> tuple[dict, dict, dict, dict]:
    """Everything a finished run leaves: checkpoint tensors and metadata, inference weights, history."""
    tensors, meta = load_tensors(run / "checkpoint.safetensors")
    meta = {**meta, "history": without_seconds(meta["history"])}
    model, _ = load_tensors(run / "model.safetensors")
    history = without_seconds(json.loads((run / "history.json").read_text()))
    return tensors, meta, model, history


def assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), (
            f"{what}: {k} differs (max |delta| {(a[k] - b[k]).abs().max():.3g})"
        )


@pytest.mark.parametrize("name", list(CASES))
def test_stopped_and_resumed_run_ends_bit_for_bit_where_the_uninterrupted_run_ends(
    name, tmp_path, monkeypatch
):
    cfg = CASES[name]
    train(cfg, tmp_path / "straight")

    save = train_module.save_checkpoint

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise Stopped

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_stop)
    with pytest.raises(Stopped):
        train(cfg, tmp_path / "resumed")
    monkeypatch.setattr(train_module, "save_checkpoint", save)
    _, meta = load_tensors(tmp_path / "resumed" / "checkpoint.safetensors")
    assert meta["step"] == EVERY and not (tmp_path / "resumed" / "history.json").exists()
    train(cfg, tmp_path / "resumed", resume=True)

    a, b = run_record(tmp_path / "straight"), run_record(tmp_path / "resumed")
    assert_same_tensors(a[0], b[0], "checkpoint")
    assert a[1] == b[1]  # step, optimizer hyper-parameters, gradient scaler, history
    assert_same_tensors(a[2], b[2], "model.safetensors")
    assert a[3] == b[3] and a[3]["step"] == list(range(1, STEPS + 1))


def test_dropout_draws_leave_the_callers_global_rng_as_it_was(tmp_path):
    """The dropout masks come from a global RNG seeded per step inside the step: a caller's own
    draws after training are the ones it would make without it."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(CASES["dropout"], tmp_path / "r")
    assert torch.equal(torch.rand(3), expected)
