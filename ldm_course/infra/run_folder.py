"""What a run folder may hold and when it may be written, checked before any work is done.

A folder with anything of a run in it is never written over without `--resume`, and `--resume`
never replaces a trained model it cannot continue. A resumed run must match the saved config and
what the run trained on (its data, and for the U-Net its latents: the VAE's encoder and the images).
Partial files left by a killed write (`checkpoint.atomic_write`'s temporaries, named by a pattern of
the project's own) are removed when the run starts again, with a line that says so; no other file is.
"""

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from ldm_course.infra.checkpoint import STARTED, load_json, stale_temporaries

# what `fit`, train_vae and train_ldm write into a run folder, besides the latents cache
# (latents*.safetensors: checked against its fingerprint before reuse, so a new run may replace
# it; notebook 04 fills it before training)
RUN_FILES = (
    "config.json",
    "checkpoint.safetensors",
    "model.safetensors",
    "history.json",
    "loss.png",
    "samples.png",
    "reconstructions.png",
)
# temporaries of run files written before the names carried TEMP_NAME's mark (no pid in them)
OLD_TEMP_NAME = re.compile(
    r"^\.(" + "|".join(map(re.escape, RUN_FILES)) + r"|latents[\w-]*\.safetensors)\.\w+\.tmp$"
)
# what a run trained on, recorded in config.json beside the settings (absent in older runs)
PROVENANCE = {
    "data": "other data (another --data folder, or its files changed)",
    "latents": "latents of another VAE encoder (the --vae run was retrained or replaced)",
}


def dataset_fingerprint(data) -> dict:
    """What a run trained on, recorded in its config.json so a resume on other data is refused:
    the image count, the class names and a sha256 of the images and labels."""
    h = hashlib.sha256()
    h.update(data.images.detach().cpu().contiguous().numpy().tobytes())
    h.update(data.labels.detach().cpu().contiguous().numpy().tobytes())
    h.update("\n".join(data.class_names).encode())
    return {"images": len(data), "classes": list(data.class_names), "sha256": h.hexdigest()}


def run_files(run_dir: Path) -> list[str]:
    return [name for name in RUN_FILES if (Path(run_dir) / name).exists()]


def partial_files(run_dir: Path) -> list[Path]:
    """Temporaries of atomic_write that a kill left behind, and only those: names of the project's
    own pattern (checkpoint.TEMP_NAME) whose writer is dead, or, from older versions, a run file's
    '.<name>.<random>.tmp'; older than this process, so never one that another rank of this run
    (which caches latents too) writes. A user's `.experiment-notes.tmp` is never touched."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    old = [
        p
        for p in run_dir.iterdir()
        if OLD_TEMP_NAME.match(p.name) and p.is_file() and p.stat().st_mtime < STARTED
    ]
    return sorted(old + stale_temporaries(run_dir))


def prepare_run_dir(run_dir: str | Path, config: dict, *, resume: bool, is_main: bool = True):
    """Refuse, with one line naming the fix, any start that would overwrite or mix runs; then
    remove partial files of killed writes. Only the main process looks: another rank could see
    files the main one has begun writing (torchrun stops every rank when one fails)."""
    if not is_main:
        return
    run_dir = Path(run_dir)
    check_run_dir_path(run_dir, resume=resume)
    present = run_files(run_dir)
    saved = load_json(run_dir / "config.json") if "config.json" in present else None
    if saved is not None and saved.get("task") != config["task"]:
        raise FileExistsError(
            f"{run_dir} holds a {saved.get('task')!r} run, not a {config['task']!r} one; "
            f"choose another --run-dir for this run (nothing was written)"
        )
    if not resume and present:
        raise FileExistsError(
            f"{run_dir} already holds a run ({', '.join(present)}); pass --resume to continue "
            "it or choose a new --run-dir (nothing was overwritten)"
        )
    if resume and "checkpoint.safetensors" not in present:
        if "model.safetensors" in present:
            raise FileExistsError(
                f"--resume: {run_dir} holds a trained model.safetensors but no "
                "checkpoint.safetensors to continue from; choose a new --run-dir (nothing was "
                "overwritten)"
            )
        if saved is None:
            raise FileNotFoundError(
                f"--resume: {run_dir} holds no run to continue (no config.json); drop --resume "
                "to start one there"
            )
    if saved is not None and resume:
        check_same_run(saved, config, run_dir)
        if "checkpoint.safetensors" not in present:
            print(f"{run_dir} has no checkpoint yet (stopped before its first): starting at step 0")
    check_writable(run_dir, f"--run-dir {run_dir}")
    remove_partial_files(run_dir)


def check_run_dir_path(run_dir: Path, *, resume: bool) -> None:
    """A run folder is a folder, and one to --resume exists (checked before the lock creates it)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(
            f"--run-dir {run_dir} is a file, not a folder; give a folder path (created if missing)"
        )
    if resume and not run_dir.exists():
        raise FileNotFoundError(
            f"--resume: {run_dir} does not exist, so there is no run to continue; check the path "
            "or drop --resume to start a new run there"
        )


def check_same_run(saved: dict, config: dict, run_dir: Path) -> None:
    """A resume continues the same run: same settings and (where recorded) the same inputs."""
    for key, what in PROVENANCE.items():
        if key in saved and saved[key] != config.get(key):
            counts = ""
            if key == "data":
                counts = f" ({saved['data']['images']} images then, {config['data']['images']} now)"
            raise ValueError(
                f"--resume: {run_dir} trained on {what}{counts}; resume with the --data and --vae "
                "it started with, or start a new --run-dir"
            )
    changed = sorted(
        k for k in set(saved) | set(config) if k not in PROVENANCE and saved.get(k) != config.get(k)
    )
    if changed:
        raise ValueError(
            f"--resume with a different config than {run_dir / 'config.json'} "
            f"(differs in {changed}); resume with the same preset and overrides"
        )


def remove_partial_files(run_dir: Path) -> None:
    partial = partial_files(run_dir)
    if partial:
        size = sum(p.stat().st_size for p in partial)
        for p in partial:
            p.unlink()
        print(
            f"removed {len(partial)} partial files ({size / 1e6:.1f} MB) that killed writes left "
            f"in {run_dir}"
        )


def check_writable(folder: str | Path, what: str) -> None:
    """Try a write in `folder` (or its nearest existing parent, where it would be created);
    `what` names the option in the message, e.g. "--out samples/grid.png"."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".ldm-course-write-test.", suffix=".tmp")
        os.close(fd)
        os.remove(tmp)
    except OSError as err:
        raise PermissionError(
            f"{what}: cannot write in {probe} ({err.strerror}); choose a writable folder or fix "
            "its permissions (nothing was written)"
        ) from None


def check_free_space(folder: str | Path, need_bytes: int, what: str) -> None:
    """Refuse to start when `folder`'s disk has less room than the run will write."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need_bytes:
        raise OSError(
            f"{what} {folder}: its disk has {free / 1e6:.0f} MB free, this run writes about "
            f"{need_bytes / 1e6:.0f} MB; free some space or choose a folder on another disk",
        )
