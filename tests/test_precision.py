"""The training precision: chosen from the card's compute capability (faked here), checked like
every setting, and fp16 with a gradient scaler trains and resumes exactly (on the CPU)."""

import numpy as np
import pytest
import torch
from helpers import tiny_data as shared_tiny_data

from ldm_course.config import VAEConfig, VAETrainConfig, ldm_preset, override, vae_preset
from ldm_course.data import TensorImageDataset
from ldm_course.infra.checkpoint import load_tensors
from ldm_course.infra.limits import check_config
from ldm_course.infra.precision import choose_precision, describe
from ldm_course.training import train as train_module
from ldm_course.training.train_vae import train_vae

CUDA = torch.device("cuda")


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA card: gpu(major, minor) sets its compute capability."""

    def make(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
        # torch 2.14 counts emulation: True on a T4. It must not decide anything.
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return make


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((9, 0), "bf16"), ((8, 0), "bf16"), ((8, 6), "bf16"), ((7, 5), "fp16"), ((7, 0), "fp16")],
)
def test_auto_follows_the_compute_capability(gpu, capability, expected):
    gpu(*capability)  # H100, A100, RTX 30xx; T4, V100
    assert choose_precision(CUDA, "auto") == expected


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_auto_is_fp32_off_cuda(device):
    assert choose_precision(device, "auto") == "fp32"


def test_explicit_choices(gpu):
    gpu(7, 5)
    assert choose_precision(CUDA, "fp32") == "fp32"
    assert choose_precision(CUDA, "fp16") == "fp16"
    with pytest.raises(
        ValueError, match=r"compute capability >= 8 \(this GPU has 7.5.*precision=fp16"
    ):
        choose_precision(CUDA, "bf16")  # emulated bf16: refused, whatever is_bf16_supported says
    gpu(8, 0)
    assert choose_precision(CUDA, "bf16") == "bf16"
    assert choose_precision("cpu", "fp16") == "fp16"  # asked for: CPU autocast exists
    with pytest.raises(ValueError, match="not supported on MPS"):
        choose_precision("mps", "fp16")
    with pytest.raises(ValueError, match="one of auto, fp32, bf16, fp16"):
        choose_precision("cpu", "half")


def test_the_choice_is_described_in_one_line(gpu):
    gpu(7, 5)
    assert describe("fp16", CUDA) == (
        "precision: fp16 autocast + gradient scaler (cuda, Fake GPU 7.5)"
    )
    assert describe("fp32", "cpu") == "precision: fp32 (cpu)"


def test_presets_and_the_setting_are_checked():
    assert vae_preset("gpu").precision == ldm_preset("gpu").precision == "auto"
    for name in ("cpu-fast", "cpu-full"):  # the shipped recipes train in fp32 anywhere
        assert vae_preset(name).precision == ldm_preset(name).precision == "fp32"
    assert [vae_preset(n).amp for n in ("cpu-fast", "cpu-full", "gpu")] == [False, False, True]
    assert override(vae_preset("gpu"), ["precision=fp16"]).precision == "fp16"
    with pytest.raises(ValueError, match="precision='fp8': choose one of auto, fp32, bf16, fp16"):
        override(vae_preset("gpu"), ["precision=fp8"])
    with pytest.raises(ValueError, match="precision='half'"):
        check_config(VAETrainConfig(precision="half"))


def fp16_config(**kw) -> VAETrainConfig:
    return VAETrainConfig(
        steps=6,
        batch_size=4,
        warmup_steps=1,
        size=32,
        perceptual_weight=0.0,
        log_every=1,
        sample_every=0,
        checkpoint_every=3,
        precision="fp16",
        vae=VAEConfig(base_channels=4, norm_groups=4),
        **kw,
    )


def tiny_data() -> TensorImageDataset:  # 12 images of seed 1, all of one unnamed class
    return shared_tiny_data(12, seed=1, class_names=(), labels=torch.zeros(12, dtype=torch.long))


class Killed(Exception):
    pass


def test_fp16_with_a_gradient_scaler_trains_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    straight, history = train_vae(
        fp16_config(), tmp_path / "straight", data=tiny_data(), progress=False
    )
    assert "precision: fp16 autocast + gradient scaler (cpu)" in capsys.readouterr().out
    assert all(torch.isfinite(torch.tensor(history["total"])))
    _, meta = load_tensors(tmp_path / "straight" / "checkpoint.safetensors")
    assert meta["precision"] == "fp16" and meta["grad_scaler"]["scale"] > 0

    # the same run killed after its first checkpoint (step 3), then resumed
    save = train_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_vae(fp16_config(), tmp_path / "resumed", data=tiny_data(), progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", save)
    resumed, history2 = train_vae(
        fp16_config(), tmp_path / "resumed", data=tiny_data(), resume=True, progress=False
    )
    for k in history:  # grad_norm is nan at a step the scaler skipped: nan == nan here
        if k != "seconds":
            np.testing.assert_array_equal(history2[k], history[k], err_msg=k)
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    _, meta2 = load_tensors(tmp_path / "resumed" / "checkpoint.safetensors")
    assert meta2["grad_scaler"] == meta["grad_scaler"]


def test_the_scaler_state_is_saved_and_restored(tmp_path):
    """A scale that has moved (after inf gradients, or grown) comes back from the checkpoint."""
    model = torch.nn.Linear(2, 2)
    loop = train_module.Loop(
        run_dir=tmp_path,
        inputs={"task": "test"},
        cfg=VAETrainConfig(),
        model=model,
        optimizer=torch.optim.AdamW(model.parameters()),
        step_fn=None,
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    scaler.scale(model(torch.ones(1, 2)).sum()).backward()
    scaler.step(loop.optimizer)
    scaler.update(new_scale=96.0)
    train_module.save_json(tmp_path / "config.json", loop.config)
    train_module.save_checkpoint(loop, tmp_path / "checkpoint.safetensors", 1, {}, "fp16", scaler)
    fresh = torch.amp.GradScaler("cpu")
    train_module.restore(loop, tmp_path, "fp16", fresh)
    assert fresh.get_scale() == 96.0 and fresh.state_dict() == scaler.state_dict()
    with pytest.raises(ValueError, match="trained in fp16.*--set precision=fp16"):
        train_module.restore(loop, tmp_path, "bf16", torch.amp.GradScaler("cpu", enabled=False))
