"""Clean stops: Ctrl-C (SIGINT) or SIGTERM during training is a request, recorded by a signal
handler and acted on by `fit` once per step, after the optimizer step: it saves a checkpoint at that
step and raises TrainingStopped, so `--resume` goes on exactly where an uninterrupted run would be.

A second signal while the first is pending stops at once (KeyboardInterrupt); the last checkpoint
is whole either way (every write is atomic). Outside the main thread signals cannot be caught, so
there the handlers are not installed and a signal acts as it would without them.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from ldm_course.infra.distributed import World

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(KeyboardInterrupt):
    """Training stopped on request at `step`, after saving its checkpoint in `run_dir`."""

    def __init__(self, *, signum: int, step: int, run_dir: str):
        self.signum, self.step, self.run_dir = signum, step, run_dir
        name = signal.Signals(signum).name
        self.summary = f"stopped by {name} at step {step}, its checkpoint saved in {run_dir}"
        super().__init__(
            f"{self.summary}; continue with resume=True (on the command line: the same command "
            "with --resume)"
        )

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended (130: SIGINT)."""
        return 128 + self.signum


class StopRequest:
    """The first SIGINT/SIGTERM received while listening (its number), or None."""

    def __init__(self):
        self.signum: int | None = None

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # asked twice: stop now, without the checkpoint
            raise KeyboardInterrupt
        self.signum = signum

    def agreed(self, world: World) -> int | None:
        """The pending signal, the same on every rank (the stop is taken at one step by all)."""
        if world.size == 1:
            return self.signum
        t = torch.tensor([self.signum or 0], device=world.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item()) or None


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Inside: SIGINT and SIGTERM set `request.signum` instead of stopping the process; on exit the
    caller's handlers are back (a notebook's kernel keeps its own Ctrl-C)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request.handle) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
