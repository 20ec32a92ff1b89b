"""Issue 23 item 1: one writer per run folder (an OS lock that dies with its process), and a
clean-up that removes only the project's own temporary files."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from run_helpers import TINY_VAE, ldm_run, vae_run

from ldm_course.cli.main import main
from ldm_course.infra.run_lock import run_lock

ROOT = Path(__file__).resolve().parents[1]
# a tiny VAE run (run_helpers.TINY_VAE, 4 steps) that hangs inside its first checkpoint
# write, after the checkpoint is whole: a run that is still training
HOLDER = textwrap.dedent(
    """
    import sys, time
    from dataclasses import replace
    from pathlib import Path
    from run_helpers import TINY_VAE, ldm_run, vae_run
    from ldm_course.training import train

    real = train.save_checkpoint
    def save_then_hang(*args, **kwargs):
        real(*args, **kwargs)
        Path(sys.argv[2]).write_text("training")
        time.sleep(600)
    train.save_checkpoint = save_then_hang
    vae_run(Path(sys.argv[1]), replace(TINY_VAE, steps=4, checkpoint_every=1))
    """
)


@pytest.fixture
def training(tmp_path):
    """(process, run folder): a run in another process, in the middle of its training."""
    run, ready = tmp_path / "run", tmp_path / "ready"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), str(ready)], env=env)
    deadline = time.monotonic() + 180
    while not ready.exists():
        assert proc.poll() is None, "the training process ended before its first checkpoint"
        assert time.monotonic() < deadline, "the training process did not reach its checkpoint"
        time.sleep(0.2)
    yield proc, run
    proc.kill()
    proc.wait()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def cli_train_vae(run: Path, *extra: str) -> list[str]:
    """train-vae on the built-in data with another lr (the issue's probe); nothing may start."""
    return ["train-vae", "--device", "cpu", "--run-dir", str(run), "--set", "lr=0.001", *extra]


def test_a_second_run_on_a_folder_in_training_is_refused_naming_its_process(training, capsys):
    proc, run = training
    before = snapshot(run)
    assert main(cli_train_vae(run)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"process {proc.pid} (" in err and "nothing was written" in err
    assert snapshot(run) == before  # not a byte of the running run's folder changed


def test_a_resume_is_refused_while_the_run_trains_and_accepted_once_it_is_killed(training):
    proc, run = training
    before = snapshot(run)
    cfg = replace(TINY_VAE, steps=4, checkpoint_every=1)  # the same run: a resume main accepted
    with pytest.raises(OSError, match=f"is being written by process {proc.pid} .*kill {proc.pid}"):
        vae_run(run, cfg, resume=True)
    assert snapshot(run) == before
    proc.send_signal(signal.SIGKILL)  # the lock dies with its process: no stale lock to clear
    proc.wait()
    _, history = vae_run(run, cfg, resume=True)
    assert history["step"] == [1, 2, 3, 4]
    assert not (run / ".ldm-course.lock").exists()  # a run that ends removes its lock file


def test_resume_keeps_a_users_own_tmp_files_and_removes_only_the_projects(tmp_path, capsys):
    run = tmp_path / "r"
    vae_run(run)
    notes = run / ".experiment-notes.tmp"  # the user's own, old: the probe
    notes.write_text("lr 5e-4 looked better")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)  # a process that has ended
    ours = run / f".checkpoint.safetensors.ldm-course-{dead_pid}.k2j4x9a1.tmp"
    ours.write_bytes(b"\0" * 1_000_000)  # what atomic_write of a killed run leaves
    alive = run / f".latents.safetensors.ldm-course-{os.getppid()}.q8w7e6r5.tmp"
    alive.write_bytes(b"\0")  # a live process is still writing it
    for p in (notes, ours, alive):
        os.utime(p, (0, 0))  # older than this process
    vae_run(run, resume=True)
    assert notes.read_text() == "lr 5e-4 looked better"
    assert not ours.exists() and alive.exists()
    assert "removed 1 partial files (1.0 MB)" in capsys.readouterr().out


def test_train_ldm_takes_the_lock_too(tmp_path):
    vae, _ = vae_run(tmp_path / "vae")
    run = tmp_path / "ldm"
    with run_lock(run):  # as a train-ldm in another process would hold it
        with pytest.raises(OSError, match=f"is being written by process {os.getpid()} "):
            ldm_run(run, vae)
        assert [p.name for p in run.iterdir()] == [".ldm-course.lock"]  # no latents, no config
    assert not run.exists()  # a refused run that created nothing leaves nothing
