"""Issue 23, item 3: no NaN model is written or loaded. A loss that turns nan or inf stops
training with one line (the step, the loss terms that are not finite, a lower lr to try) and
keeps the last good checkpoint; weights that are not finite are never saved; a weight file or
checkpoint holding nan or inf is refused by every loader, naming the file and the tensor."""

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from run_helpers import TINY_VAE, ldm_run, vae_run

from ldm_course.cli.main import main
from ldm_course.infra.checkpoint import load_tensors, save_tensors
from ldm_course.pretrained import load_ldm, load_unet, load_vae
from ldm_course.training import train as train_module

DIVERGING = replace(TINY_VAE, lr=1e4, steps=6, checkpoint_every=1)  # step 1 finite, step 2 nan


def poison(file: Path) -> str:
    """Write nan into the first element of the file's first floating-point tensor; its name."""
    tensors, meta = load_tensors(file)
    name = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    save_tensors(file, tensors, meta)
    return name


def test_a_diverging_run_stops_at_its_first_nan_loss_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(ValueError) as err:
        vae_run(run, DIVERGING)
    message = str(err.value)
    assert "step 2 of 6" in message and "recon=nan" in message and "total=nan" in message
    assert "lower lr (this run: lr=10000)" in message and "\n" not in message
    # the checkpoint of step 1 is kept as it was: bit for bit the one a 1-step run writes
    kept, meta = load_tensors(run / "checkpoint.safetensors")
    vae_run(tmp_path / "one", replace(DIVERGING, steps=1))
    one, _ = load_tensors(tmp_path / "one" / "checkpoint.safetensors")
    assert meta["step"] == 1 and kept.keys() == one.keys()
    assert all(torch.equal(kept[k], one[k]) for k in kept)
    # model.safetensors is the one exported with it, and nothing else of step 2 was written
    exported = load_vae(run).state_dict()
    assert all(torch.equal(exported[k], kept[f"model.{k}"]) for k in exported)
    assert not (run / "history.json").exists()


def _png_folder(root: Path) -> Path:
    gen = np.random.default_rng(0)
    for i in range(8):
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        pixels = gen.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "ab"[i % 2] / f"{i}.png")
    return root


def test_train_vae_with_lr_10000_exits_2_with_one_line(tmp_path, capsys):
    settings = [
        "lr=10000",
        "steps=4",
        "checkpoint_every=1",
        "size=32",
        "batch_size=4",
        "log_every=1",
        "sample_every=0",
        "warmup_steps=1",
        "perceptual_weight=0",
        "vae.base_channels=4",
        "vae.norm_groups=4",
    ]
    args = ["train-vae", "--device", "cpu", "--data", str(_png_folder(tmp_path / "imgs"))]
    args += ["--run-dir", str(tmp_path / "r"), *(a for kv in settings for a in ("--set", kv))]
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith("ldm-course train-vae: error: training stopped at step 2 of 4")
    assert "lower lr" in errors[0]
    assert load_tensors(tmp_path / "r" / "checkpoint.safetensors")[1]["step"] == 1


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    """A finite loss can still leave inf weights behind; the checkpoint of that step is refused
    and the previous one stays whole."""
    model = torch.nn.Linear(2, 2)
    loop = train_module.Loop(
        run_dir=tmp_path,
        inputs={"task": "test"},
        cfg=TINY_VAE,
        model=model,
        optimizer=torch.optim.AdamW(model.parameters()),
        step_fn=None,
    )
    ckpt = tmp_path / "checkpoint.safetensors"
    train_module.save_checkpoint(loop, ckpt, 1, {})
    before = ckpt.read_bytes()
    with torch.no_grad():
        model.weight[0, 1] = float("inf")
    with pytest.raises(
        ValueError, match=r"step 2 of 2: the weights are not finite \(model\.weight"
    ):
        train_module.save_checkpoint(loop, ckpt, 2, {})
    assert ckpt.read_bytes() == before


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    vae, _ = vae_run(root / "vae", replace(TINY_VAE, checkpoint_every=1))
    ldm_run(root / "ldm", vae)
    return root / "vae", root / "ldm"


def test_a_nan_vae_file_is_refused_by_load_vae_and_load_ldm(runs, tmp_path):
    vae_run_dir, ldm_run_dir = runs
    bad = tmp_path / "vae.safetensors"
    bad.write_bytes((vae_run_dir / "model.safetensors").read_bytes())
    name = poison(bad)
    for load in (lambda: load_vae(bad), lambda: load_ldm(ldm_run_dir, bad)):
        with pytest.raises(ValueError, match=f"{re.escape(str(bad))}.*not finite.*{name!r}"):
            load()


def test_a_nan_unet_file_is_refused_by_load_unet_and_load_ldm(runs, tmp_path):
    vae_run_dir, ldm_run_dir = runs
    bad = tmp_path / "unet.safetensors"
    bad.write_bytes((ldm_run_dir / "model.safetensors").read_bytes())
    name = poison(bad)
    for load in (lambda: load_unet(bad), lambda: load_ldm(bad, vae_run_dir)):
        with pytest.raises(ValueError, match=f"{re.escape(str(bad))}.*not finite.*{name!r}"):
            load()


def test_resume_from_a_nan_checkpoint_is_refused(tmp_path):
    run = tmp_path / "r"
    vae_run(run)
    name = poison(run / "checkpoint.safetensors")
    with pytest.raises(ValueError, match=f"checkpoint.safetensors.*not finite.*{name!r}"):
        vae_run(run, resume=True)


def test_reconstruct_with_a_nan_vae_exits_2_without_a_psnr(runs, tmp_path, capsys):
    bad = tmp_path / "vae.safetensors"
    bad.write_bytes((runs[0] / "model.safetensors").read_bytes())
    poison(bad)
    out = tmp_path / "r.png"
    assert (
        main(["reconstruct", "--vae", str(bad), "--n", "4", "--device", "cpu", "--out", str(out)])
        == 2
    )
    captured = capsys.readouterr()
    assert "PSNR" not in captured.out and not out.exists()
    assert captured.err.count("\n") == 1 and "not finite" in captured.err


def test_fp16_steps_the_gradient_scaler_skips_are_not_refused(tmp_path):
    """With fp16 a loss * scale that overflows gives inf gradients: the scaler skips that step and
    halves its scale. That is not divergence: the loss itself is finite, so training goes on."""
    model = torch.nn.Linear(2, 1)
    x = torch.ones(4, 2)

    def step_fn(step, gen):
        loss = model(x).float().pow(2).mean() * 1e35  # finite, but * 65536 overflows float32
        return loss, {"loss": loss.item()}

    cfg = replace(TINY_VAE, precision="fp16", steps=3, log_every=1, checkpoint_every=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop = train_module.Loop(
        run_dir=tmp_path / "r",
        inputs={"task": "test"},
        cfg=cfg,
        model=model,
        optimizer=torch.optim.AdamW(model.parameters()),
        step_fn=step_fn,
        progress=False,
    )
    history = train_module.fit(loop)
    assert history["step"] == [1, 2, 3] and all(np.isfinite(history["loss"]))
    _, meta = load_tensors(tmp_path / "r" / "checkpoint.safetensors")
    assert meta["grad_scaler"]["scale"] == 65536.0 / 2**3  # every step skipped, scale halved
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
