"""Issue 23 item 5: clean stops. Ctrl-C (SIGINT) or SIGTERM saves the step it came in and resumes
bit for bit; a full disk during a checkpoint write is one line with the previous checkpoint whole;
a killed `sample --out s.png` leaves no temporary file once the next command writes that path."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from run_helpers import TINY_VAE, tiny_data, vae_run
from safetensors import SafetensorError

from ldm_course.cli import main as cli
from ldm_course.infra import checkpoint
from ldm_course.infra.checkpoint import load_tensors
from ldm_course.training import train_vae as train_vae_module
from ldm_course.vae import vae_loss

ROOT = Path(__file__).resolve().parents[1]
STOP_CFG = replace(TINY_VAE, steps=6, log_every=1, checkpoint_every=0)
# the same tiny run on the command line (the data comes from run_helpers.tiny_data)
TINY_SETTINGS = [
    *("--set", "size=32", "--set", "batch_size=4", "--set", "steps=6", "--set", "log_every=1"),
    *("--set", "warmup_steps=1", "--set", "sample_every=0", "--set", "checkpoint_every=0"),
    *("--set", "vae.base_channels=4", "--set", "vae.norm_groups=4", "--set", "num_threads=1"),
    *("--device", "cpu"),
]


@pytest.fixture(autouse=True)
def sigterm_raises():
    """Without a handler of the training's own, a SIGTERM raises here instead of ending pytest."""

    def unhandled(signum, frame):
        raise RuntimeError("SIGTERM reached the test: training did not handle it")

    previous = signal.signal(signal.SIGTERM, unhandled)
    yield
    signal.signal(signal.SIGTERM, previous)


def signalling_loss(signum: int | None, at_call: int):
    """vae_loss that, on its `at_call`-th call (step at_call - 1), sends `signum` to this process:
    the handler runs at once, in the middle of that step, before its optimizer step."""
    calls = []

    def loss_fn(x, recon, posterior, **kwargs):
        calls.append(1)
        if signum is not None and len(calls) == at_call:
            os.kill(os.getpid(), signum)
        return vae_loss(x, recon, posterior, **kwargs)

    return loss_fn


def same_run(a: Path, b: Path) -> bool:
    """Bit-identical weights, EMA, optimizer state and history (seconds aside)."""
    ta, ma = load_tensors(a / "checkpoint.safetensors")
    tb, mb = load_tensors(b / "checkpoint.safetensors")
    ha, hb = ({k: v for k, v in m["history"].items() if k != "seconds"} for m in (ma, mb))
    same = ta.keys() == tb.keys() and all((ta[k] == tb[k]).all() for k in ta)
    return (
        same
        and ha == hb
        and (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_the_current_step_and_resuming_it_is_bit_identical(tmp_path, signum):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    vae_run(whole, STOP_CFG, loss_fn=signalling_loss(None, 0))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match=f"stopped by {signum.name} at step 3"):
        vae_run(stopped, STOP_CFG, loss_fn=signalling_loss(signum, at_call=3))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    _, meta = load_tensors(stopped / "checkpoint.safetensors")
    assert meta["step"] == 3  # the step the signal came in, not the last interval's checkpoint
    assert not (stopped / "history.json").exists()  # the run is not finished
    vae_run(stopped, STOP_CFG, loss_fn=signalling_loss(None, 0), resume=True)
    assert same_run(whole, stopped)


def message(stderr: str) -> str:
    """The command's one line on stderr (the others are the progress bar's); no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("ldm-course")]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


def signalling_step(monkeypatch, signum: int, at_call: int) -> None:
    """train-vae's step sends `signum` to this process on its `at_call`-th call."""
    real, calls = train_vae_module.vae_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_vae_module, "vae_step", step)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_in_train_vae_is_one_line_with_the_resume_command_and_no_traceback(
    tmp_path, monkeypatch, capsys, signum, code
):
    monkeypatch.setattr(cli, "_data", lambda args, cfg: tiny_data())
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert cli.main(["train-vae", "--run-dir", str(whole), *TINY_SETTINGS]) == 0
    capsys.readouterr()
    argv = ["train-vae", "--run-dir", str(stopped), *TINY_SETTINGS]
    with monkeypatch.context() as m:
        signalling_step(m, signum, at_call=2)
        try:
            assert cli.main(argv) == code
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped train-vae as a KeyboardInterrupt (a traceback)")
    err = message(capsys.readouterr().err)
    assert f"stopped by {signum.name} at step 2" in err
    assert err.endswith(
        f"continue with: ldm-course train-vae --run-dir {stopped} "
        f"{' '.join(TINY_SETTINGS)} --resume"
    )
    assert cli.main([*argv, "--resume"]) == 0
    assert same_run(whole, stopped)


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_the_run_resumes(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(cli, "_data", lambda args, cfg: tiny_data())
    whole, full = tmp_path / "whole", tmp_path / "full"
    settings = [*TINY_SETTINGS, "--set", "checkpoint_every=2"]
    assert cli.main(["train-vae", "--run-dir", str(whole), *settings]) == 0
    real, calls = checkpoint.save_file, []

    def disk_fills(tensors, path, metadata=None):  # checkpoint 2, model 2, then checkpoint 4
        calls.append(1)
        if len(calls) == 3:
            Path(path).write_bytes(b"\0" * 100)  # half a file, then what safetensors raises
            raise SafetensorError(
                "Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                '"No space left on device" })'
            )
        return real(tensors, path, metadata=metadata)

    argv = ["train-vae", "--run-dir", str(full), *settings]
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save_file", disk_fills)
        assert cli.main(argv) == 2
    err = message(capsys.readouterr().err)
    assert f"cannot write {full / 'checkpoint.safetensors'}" in err and "No space left" in err
    assert " MB free on its disk" in err and "previous checkpoint.safetensors is intact" in err
    assert err.endswith("--resume")
    assert load_tensors(full / "checkpoint.safetensors")[1]["step"] == 2
    assert not [p for p in full.iterdir() if p.name.endswith(".tmp")]
    assert cli.main([*argv, "--resume"]) == 0
    assert same_run(whole, full)


# writes s.png through atomic_write (as `sample --out s.png` does) and is killed mid-write
KILLED_WRITE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from PIL import Image
    from ldm_course.course.viz import save_grid

    def hang(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a PNG")
        Path(sys.argv[2]).write_text("writing")
        time.sleep(600)
    Image.Image.save = hang
    save_grid(torch.zeros(1, 3, 8, 8), sys.argv[1])
    """
)


@pytest.mark.slow  # over 7 s: in CI's full run, not the fast subset
def test_a_killed_sample_leaves_no_temporary_file_after_the_next_run(tmp_path):
    out, ready = tmp_path / "s.png", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, str(out), str(ready)], env=env)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    left = [p.name for p in tmp_path.glob(".s.png.*.tmp")]
    assert left, "the killed write left no temporary file: the test did not kill mid-write"
    notes = tmp_path / ".s.png.notes.tmp"  # a user's file beside it stays
    notes.write_text("mine")
    argv = ["sample", "--n", "1", "--steps", "2", "--device", "cpu", "--out", str(out)]
    code = f"import sys; from ldm_course.cli.main import main; sys.exit(main({argv!r}))"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert out.exists() and notes.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [notes.name]
    assert "removed 1 temporary files that killed writes of" in run.stderr


def test_a_second_signal_stops_at_once_and_the_cli_still_says_how_to_resume(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(cli, "_data", lambda args, cfg: tiny_data())
    real, calls = train_vae_module.vae_step, []

    def impatient(*args, **kwargs):  # Ctrl-C twice within step 1
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_vae_module, "vae_step", impatient)
    run = tmp_path / "r"
    argv = ["train-vae", "--run-dir", str(run), *TINY_SETTINGS]
    try:
        assert cli.main(argv) == 130
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C escaped train-vae as a KeyboardInterrupt (a traceback)")
    assert len(calls) == 2  # stopped inside step 1, without finishing it
    err = message(capsys.readouterr().err)
    assert err.startswith("ldm-course train-vae: interrupted") and err.endswith("--resume")


def test_ctrl_c_while_sample_loads_is_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_ldm", interrupted)
    try:
        code = cli.main(["sample", "--out", str(tmp_path / "s.png")])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped sample as a KeyboardInterrupt (a traceback)")
    assert code == 130
    assert (
        message(capsys.readouterr().err)
        == "ldm-course sample: interrupted (no partial output was left)"
    )
