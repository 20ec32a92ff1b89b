"""End-to-end training through the CLI in subprocesses: exact resume after a real kill, DDP on
gloo equals one process with the same global batch, refusals that protect existing runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ldm_course.data import twemoji
from ldm_course.infra.checkpoint import load_tensors, save_tensors
from ldm_course.pretrained import load_ldm

pytestmark = pytest.mark.slow  # every test here trains through the CLI in subprocesses

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
VAE_SET = [
    "--set",
    "size=32",
    "--set",
    "batch_size=8",
    "--set",
    "log_every=1",
    "--set",
    "sample_every=0",
    "--set",
    "vae.base_channels=4",
    "--set",
    "vae.norm_groups=4",
]
LDM_SET = [
    "--set",
    "size=32",
    "--set",
    "batch_size=16",
    "--set",
    "log_every=1",
    "--set",
    "sample_every=0",
    "--set",
    "unet.base_channels=16",
    "--set",
    "unet.num_res_blocks=1",
    "--set",
    "unet.attention_levels=1",
]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ldm_course", *args],
        env=ENV,
        capture_output=True,
        text=True,
        check=check,
    )


def kill_after_first_checkpoint(args: list[str], run: Path) -> None:
    """Start training in a subprocess and SIGKILL it as soon as its first checkpoint exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ldm_course", *args, "--run-dir", str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (run / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def straight_and_resumed(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    """The same run twice: uninterrupted, and SIGKILLed after its first checkpoint then resumed.
    Asserts the kill happened before the end and kept the config; returns both run folders."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    cli(*args, "--run-dir", str(straight))
    kill_after_first_checkpoint(args, resumed)
    assert json.loads((resumed / "config.json").read_text())["task"] == args[0].removeprefix(
        "train-"
    )
    assert not (resumed / "history.json").exists(), "the run was killed before it finished"
    cli(*args, "--run-dir", str(resumed), "--resume")
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    return straight, resumed


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("vae") / "run"
    cli("train-vae", "--device", "cpu", "--run-dir", str(run), *VAE_SET, "--set", "steps=2")
    return run


def vae_run(steps: int, *settings: str) -> list[str]:
    """train-vae arguments of a tiny run with a checkpoint every 3 steps, plus key=value settings."""
    pairs = (f"steps={steps}", "checkpoint_every=3", *settings)
    return ["train-vae", "--device", "cpu", *VAE_SET, *(a for kv in pairs for a in ("--set", kv))]


def test_vae_resume_after_kill_ends_where_uninterrupted_run_ends(tmp_path):
    args = vae_run(12)
    straight, resumed = straight_and_resumed(args, tmp_path)
    h_a = json.loads((straight / "history.json").read_text())
    h_b = json.loads((resumed / "history.json").read_text())
    assert h_a["total"] == h_b["total"] and h_a["step"] == list(range(1, 13))


def test_adversarial_vae_resumes_both_players_exactly(tmp_path):
    """The discriminator and its optimizer state live in the checkpoint too: without them the
    resumed decoder would meet a fresh discriminator and end elsewhere."""
    args = vae_run(
        8,
        "adversarial_weight=0.5",
        "adversarial_start=2",
        "disc.base_channels=4",
        "disc.norm_groups=4",
        "disc.num_layers=2",
    )
    straight, resumed = straight_and_resumed(args, tmp_path)
    h = json.loads((straight / "history.json").read_text())
    assert h == json.loads((resumed / "history.json").read_text()) | {"seconds": h["seconds"]}
    assert h["adv_weight"][:2] == [0.0, 0.0] and all(w > 0 for w in h["adv_weight"][2:])
    tensors, _ = load_tensors(straight / "checkpoint.safetensors")
    assert any(k.startswith("model.disc.") for k in tensors)
    assert not any(k.startswith("disc.") for k in weights(straight))  # inference weights: VAE only


def test_negative_adversarial_weight_is_refused_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    out = cli(*vae_run(3, "adversarial_weight=-0.5"), "--run-dir", str(run), check=False)
    assert out.returncode == 2 and "adversarial_weight=-0.5 is out of range" in out.stderr
    assert not run.exists()


def test_ldm_resume_restores_ema_and_optimizer(tmp_path, tiny_vae):
    args = [
        "train-ldm",
        "--device",
        "cpu",
        "--vae",
        str(tiny_vae),
        *LDM_SET,
        "--set",
        "steps=12",
        "--set",
        "checkpoint_every=3",
        "--set",
        "sample_by=group",  # batches by base emoji are a function of the step too
        "--set",
        "labels=subcategory",
        "--set",
        "flip=true",  # mirror coins: drawn from the step's generator, so resumed exactly too
    ]
    straight, _ = straight_and_resumed(args, tmp_path)  # EMA weights: model.safetensors
    ldm = load_ldm(straight, tiny_vae)
    assert ldm.unet.cfg.num_classes == 99  # conditioned on the 99 subcategories
    assert ldm.class_names == twemoji("train", labels="subcategory").class_names
    assert (straight / "latents-mirrored.safetensors").exists()  # flip=true took effect


def test_training_lowers_the_loss(tiny_vae, tmp_path):
    run = tmp_path / "ldm"
    cli(
        "train-ldm",
        "--device",
        "cpu",
        "--vae",
        str(tiny_vae),
        "--run-dir",
        str(run),
        *LDM_SET,
        "--set",
        "steps=40",
        "--set",
        "lr=2e-3",
    )
    loss = json.loads((run / "history.json").read_text())["loss"]
    assert sum(loss[-10:]) / 10 < 0.8 * sum(loss[:5]) / 5


def test_vae_init_from_decoder_fine_tune_keeps_the_encoder_and_refuses_other_configs(tmp_path):
    args = ["train-vae", "--device", "cpu", *VAE_SET, "--set", "perceptual_weight=0"]
    first = tmp_path / "first"
    cli(*args, "--run-dir", str(first), "--set", "steps=3")
    ft = ["--set", f"init_from={first}", "--set", "train_encoder=false", "--set", "steps=3"]
    cli(*args, "--run-dir", str(tmp_path / "ft"), *ft, "--set", "seed=1")
    a, b = weights(first), weights(tmp_path / "ft")
    enc = [k for k in a if k.startswith("encoder.")]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)  # the latent space is unchanged
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    # 2 GroupNorm groups instead of 4: the same shapes, so load_state_dict alone would accept it
    other = cli(
        *args, "--run-dir", str(tmp_path / "other"), *ft, "--set", "vae.norm_groups=2", check=False
    )
    assert other.returncode == 2 and "use the same vae settings" in other.stderr
    assert not (tmp_path / "other" / "model.safetensors").exists()


def test_ldm_init_from_starts_from_those_weights_and_refuses_others(tmp_path, tiny_vae):
    args = ["train-ldm", "--device", "cpu", "--vae", str(tiny_vae), *LDM_SET]
    first = tmp_path / "first"
    cli(*args, "--run-dir", str(first), "--set", "steps=4")
    # lr 0: the weights cannot move, so the second stage exports exactly what it started from
    frozen = ["--set", "lr=0", "--set", "min_lr=0", "--set", "steps=2", "--set", "seed=1"]
    cli(*args, "--run-dir", str(tmp_path / "again"), *frozen, "--set", f"init_from={first}")
    a, b = weights(first), weights(tmp_path / "again")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)
    cli(*args, "--run-dir", str(tmp_path / "scratch"), *frozen)  # without init_from: random
    scratch = weights(tmp_path / "scratch")
    assert sum(not torch.allclose(scratch[k], a[k]) for k in a) > len(a) // 2

    other_arch = cli(
        *args,
        "--run-dir",
        str(tmp_path / "wider"),
        *frozen,
        "--set",
        f"init_from={first}",
        "--set",
        "unet.base_channels=8",
        check=False,
    )
    assert other_arch.returncode == 2 and "use the same unet settings" in other_arch.stderr
    other_vae = cli(
        *[x if x != str(tiny_vae) else "pretrained" for x in args],
        "--run-dir",
        str(tmp_path / "other-vae"),
        *frozen,
        "--set",
        f"init_from={first}",
        check=False,
    )
    assert other_vae.returncode == 2 and "pass the same --vae" in other_vae.stderr
    assert not (tmp_path / "other-vae" / "model.safetensors").exists()


def test_ldm_init_from_trusts_the_latents_fingerprint_over_the_scale_factors_last_digits(
    tmp_path, tiny_vae
):
    """A stage on another device may measure the scale factor a few ulps apart: the same encoder
    weights and images (fingerprint) are accepted; files without a fingerprint fall back to 1e-6."""
    args = ["train-ldm", "--device", "cpu", "--vae", str(tiny_vae), *LDM_SET, "--set", "steps=2"]
    first = tmp_path / "first"
    cli(*args, "--run-dir", str(first))
    tensors, meta = load_tensors(first / "model.safetensors")
    assert len(meta["latents_fingerprint"]) == 64  # sha256 hex
    meta["scale_factor"] *= 1 + 1e-5  # as if measured on a GPU
    save_tensors(first / "model.safetensors", tensors, meta)
    cli(*args, "--run-dir", str(tmp_path / "near"), "--set", f"init_from={first}")
    del meta["latents_fingerprint"]  # a file from before fingerprints: the scale factor decides
    save_tensors(first / "model.safetensors", tensors, meta)
    old = cli(*args, "--run-dir", str(tmp_path / "old"), "--set", f"init_from={first}", check=False)
    assert old.returncode == 2 and "latents scaled by" in old.stderr


def test_ddp_two_processes_match_one_process(tmp_path, tiny_vae):
    args = ["train-ldm", "--device", "cpu", "--vae", str(tiny_vae), *LDM_SET, "--set", "steps=4"]
    cli(*args, "--run-dir", str(tmp_path / "single"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "ldm_course",
            *args,
            "--run-dir",
            str(tmp_path / "ddp"),
        ],
        env=ENV,
        check=True,
        capture_output=True,
    )
    single = json.loads((tmp_path / "single" / "history.json").read_text())["loss"]
    ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())["loss"]
    assert len(single) == len(ddp) == 4
    assert ddp == pytest.approx(single, rel=1e-4)
    a, b = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_existing_run_is_not_overwritten(tmp_path, tiny_vae):
    before = (tiny_vae / "checkpoint.safetensors").read_bytes()
    out = cli(
        "train-vae",
        "--device",
        "cpu",
        "--run-dir",
        str(tiny_vae),
        *VAE_SET,
        "--set",
        "steps=2",
        check=False,
    )
    assert out.returncode == 2 and "pass --resume" in out.stderr
    assert (tiny_vae / "checkpoint.safetensors").read_bytes() == before


def test_resume_with_other_settings_is_refused(tiny_vae):
    out = cli(
        "train-vae",
        "--device",
        "cpu",
        "--run-dir",
        str(tiny_vae),
        *VAE_SET,
        "--set",
        "steps=3",
        "--resume",
        check=False,
    )
    assert out.returncode == 2 and "different config" in out.stderr and "steps" in out.stderr
