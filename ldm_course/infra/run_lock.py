"""One writer per run folder: an OS file lock on `<run_dir>/.ldm-course.lock`, held while a run
trains and released by the operating system when its process ends, however it ends (a kill -9 or a
crash included), so a folder is never left locked and never written by two runs at once.

The lock is `fcntl.flock` on an open file: a second process (a second run, or a --resume of a run
that is still training) fails to take it and is refused before it touches the folder. The file holds
the pid and command of its holder, which the refusal names; it is removed when the run ends (after a
kill it stays, unlocked, and the next run takes it). POSIX only: on Windows the lock is skipped.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ldm_course.infra.run_folder import check_run_dir_path, check_writable

LOCK_NAME = ".ldm-course.lock"


class RunFolderBusy(OSError):
    """Another live process holds the run folder's lock; the message names it and the fix."""


@contextmanager
def run_lock(run_dir: str | Path, *, resume: bool = False, is_main: bool = True) -> Iterator[None]:
    """Inside: this process is the only writer of `run_dir` (created if missing). Only the main
    rank locks; the other ranks of a torchrun job belong to the same run."""
    if not is_main:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the other run-folder checks still apply
        yield
        return
    run_dir = Path(run_dir)
    check_run_dir_path(run_dir, resume=resume)
    check_writable(run_dir, f"--run-dir {run_dir}")  # the message of a read-only folder
    created = not run_dir.exists()
    path = run_dir / LOCK_NAME
    fd = acquire(path, fcntl)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv)}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked: a process that opens it now sees it is gone
        os.close(fd)  # releases the lock (a kill releases it the same way, leaving the file)
        if created:
            with suppress(OSError):  # a run refused before it wrote anything leaves no folder
                run_dir.rmdir()


def acquire(path: Path, fcntl) -> int:
    """Open and lock `path`, refusing at once (RunFolderBusy) when a live process holds it. A
    lock taken on a file its holder has just removed is no lock: then open the new file, again."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise PermissionError(
                f"--run-dir {path.parent}: cannot create its lock file {LOCK_NAME} "
                f"({err.strerror}); choose a writable folder or fix its permissions (nothing was "
                "written)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0)
            os.close(fd)
            raise RunFolderBusy(busy_message(path.parent, holder)) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def busy_message(run_dir: Path, holder: bytes) -> str:
    """'<run_dir> is being written by process 123 (ldm-course train-vae ...); ...'"""
    pid, _, command = holder.decode(errors="replace").strip().partition(" ")
    who = f"process {pid} ({command or 'command unknown'})" if pid else "another process"
    stop = f"wait for it to finish or stop it (kill {pid})" if pid else "wait for it to finish"
    return (
        f"{run_dir} is being written by {who}; {stop}, then --resume it, or choose another "
        "--run-dir (nothing was written)"
    )
