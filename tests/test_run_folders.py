"""Run folders: nothing lost (a run is never overwritten, partial files of killed writes removed,
unwritable or full disks refused up front), nothing silently wrong on resume or sampling (other
data, a retrained VAE, the recorded VAE), and wrong folders refused before any work."""

import os
from dataclasses import replace

import pytest
from run_helpers import TINY_VAE, ldm_run, tiny_data, vae_run

from ldm_course.cli.main import main
from ldm_course.infra import run_folder


def test_a_run_without_its_checkpoint_is_never_overwritten(tmp_path):
    run = tmp_path / "r"
    vae_run(run)
    (run / "checkpoint.safetensors").unlink()
    before = (run / "model.safetensors").read_bytes()
    other = replace(TINY_VAE, steps=3, vae=replace(TINY_VAE.vae, base_channels=8))
    for resume in (True, False):
        with pytest.raises(FileExistsError, match="nothing was overwritten"):
            vae_run(run, other, resume=resume)
    assert (run / "model.safetensors").read_bytes() == before


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    vae_run(run)  # an empty folder is fine without --resume
    for name in ("checkpoint.safetensors", "model.safetensors", "history.json"):
        (run / name).unlink()
    _, history = vae_run(run, resume=True)
    assert history["step"] == [1, 2] and "starting at step 0" in capsys.readouterr().out


def test_partial_files_of_killed_writes_are_removed_on_restart(tmp_path, capsys):
    run = tmp_path / "r"
    vae_run(run)
    junk = run / ".checkpoint.safetensors.abc123.tmp"
    junk.write_bytes(b"\0" * 2_000_000)
    os.utime(junk, (0, 0))  # left by an earlier process (one of this run's own ranks is newer)
    fresh = run / ".latents.safetensors.rank1.tmp"  # another rank of this run, writing now
    fresh.write_bytes(b"\0")
    vae_run(run, resume=True)
    assert not junk.exists() and fresh.exists()
    assert "removed 1 partial files (2.0 MB)" in capsys.readouterr().out


def test_resume_with_other_data_is_refused(tmp_path):
    run = tmp_path / "r"
    vae_run(run, replace(TINY_VAE, checkpoint_every=1), data=tiny_data(0))
    with pytest.raises(ValueError, match="other data"):
        vae_run(run, replace(TINY_VAE, checkpoint_every=1), data=tiny_data(1), resume=True)


def test_resume_of_an_ldm_on_a_retrained_vae_is_refused(tmp_path):
    vae, _ = vae_run(tmp_path / "vae")
    ldm_run(tmp_path / "ldm", vae)
    retrained, _ = vae_run(tmp_path / "vae2", replace(TINY_VAE, seed=1))
    with pytest.raises(ValueError, match="latents of another VAE encoder"):
        ldm_run(tmp_path / "ldm", retrained, resume=True)


def test_sample_decodes_with_the_vae_the_unet_was_trained_on(tmp_path, capsys):
    vae, _ = vae_run(tmp_path / "vae")
    ldm_run(tmp_path / "ldm", vae, vae_source=str(tmp_path / "vae"))
    args = ["sample", "--ldm", str(tmp_path / "ldm"), "--n", "2", "--steps", "2"]
    out = str(tmp_path / "s.png")
    assert main([*args, "--device", "cpu", "--out", out]) == 0  # the recorded VAE
    assert main([*args, "--vae", "pretrained", "--out", out]) == 2
    assert "another VAE encoder" in capsys.readouterr().err
    assert main([*args, "--vae", "pretrained", "--force-vae", "--out", out]) == 0


def test_sample_refuses_a_recorded_vae_that_is_gone(tmp_path, capsys):
    vae, _ = vae_run(tmp_path / "vae")
    ldm_run(tmp_path / "ldm", vae, vae_source=str(tmp_path / "gone"))
    out = str(tmp_path / "s.png")
    assert main(["sample", "--ldm", str(tmp_path / "ldm"), "--n", "1", "--out", out]) == 2
    assert "pass --vae with that VAE" in capsys.readouterr().err


def test_resume_on_a_missing_folder_is_refused(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="drop --resume"):
        vae_run(tmp_path / "nothing", resume=True)
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no run to continue"):
        vae_run(tmp_path / "empty", resume=True)
    assert list((tmp_path / "empty").iterdir()) == []


def test_an_unwritable_run_folder_is_refused_before_training(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    vae_run(tmp_path / "r", replace(TINY_VAE, checkpoint_every=1))
    before = (tmp_path / "r" / "checkpoint.safetensors").read_bytes()
    monkeypatch.setattr(run_folder.tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match="cannot write in"):
        vae_run(tmp_path / "r", replace(TINY_VAE, checkpoint_every=1), resume=True)
    assert (tmp_path / "r" / "checkpoint.safetensors").read_bytes() == before


def test_a_full_disk_is_refused_before_training(tmp_path, monkeypatch):
    usage = run_folder.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(OSError, match="1 MB free|0 MB free"):
        vae_run(tmp_path / "r")
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_a_truly_read_only_run_dir_through_the_cli(tmp_path, capsys):  # /proc: even root
    code = main(["train-vae", "--set", "steps=1", "--device", "cpu", "--run-dir", "/proc/r"])
    assert code == 2 and "cannot write in /proc" in capsys.readouterr().err


def test_a_vae_run_given_as_the_ldm_run_dir_is_refused_first(tmp_path):
    vae, _ = vae_run(tmp_path / "vae")
    with pytest.raises(FileExistsError, match="holds a 'vae' run, not a 'ldm' one"):
        ldm_run(tmp_path / "vae", vae)
    assert not (tmp_path / "vae" / "latents.safetensors").exists()


def test_a_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is a file, not a folder"):
        vae_run(tmp_path / "f")


def test_the_recorded_provenance_is_in_config_json(tmp_path):
    vae, _ = vae_run(tmp_path / "vae")
    ldm_run(tmp_path / "ldm", vae)
    config = run_folder.load_json(tmp_path / "ldm" / "config.json")
    assert config["data"]["images"] == 8 and len(config["latents"]) == 64
    assert config["data"] == run_folder.dataset_fingerprint(tiny_data())
