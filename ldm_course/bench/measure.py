"""Measuring tools shared by the benchmarks: interleaved timing, FLOP counts, peak tensor memory,
parameter counts and a training step. Nothing here prints; `ldm_course.bench.run` prints the tables.

Timing protocol: every function is run `warmup` times first, then the functions take turns,
A, B, A, B, ... (the order flips every repeat, so neither always runs right after the other), and
each is summarised by its median. A ratio B/A is the median over repeats of t_B / t_A from the same
repeat: slow drifts in machine load (other processes) then cancel in the ratio.
"""

import statistics
import time
import weakref
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

MIB = 2**20


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock time covers it; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Clock = Literal["wall", "cpu"]
CLOCKS: tuple[str, ...] = get_args(Clock)


def clock_fn(clock: Clock) -> Callable[[], float]:
    """The timer for `clock`. "wall": time.perf_counter. "cpu": time.process_time, the CPU seconds
    of this process, which leave out the time it waited for a core while other jobs ran. It
    equals wall time only for a single-threaded CPU run (with N threads it counts N seconds per
    second), so use it with --threads 1 on a shared machine."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    return time.perf_counter if clock == "wall" else time.process_time


def interleaved_times(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | None = None,
    warmup_fns: dict[str, Callable[[], object]] | None = None,
    clock: Clock = "wall",
) -> dict[str, list[float]]:
    """Seconds per call of each function, `repeats` times, taking turns (see the module docstring).

    `warmup_fns` (same keys) replaces the functions during warm-up, e.g. a 2-step sampler standing
    in for a 50-step one: warm-up only has to allocate buffers and pick kernels.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    now = clock_fn(clock)
    device = device if device is not None else torch.device("cpu")
    for name in fns:
        for _ in range(warmup):
            (warmup_fns or fns)[name]()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            synchronize(device)
            start = now()
            fns[name]()
            synchronize(device)
            times[name].append(now() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over repeats of numerator[r] / denominator[r] (times from the same repeat)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call, counted by torch.utils.flop_counter.FlopCounterMode (2 per multiply-add).

    It counts matrix multiplications, convolutions and attention (forward, and backward when `fn`
    calls backward); normalisation, activations and optimizer updates count as zero.
    """
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensor storage allocated by ATen ops while the mode is active.

    Every op output whose storage is new (not one of the op's inputs, so views and in-place
    updates do not count) is added to a running total and removed when its storage is freed
    (a weakref finalizer on the storage). The peak of that total is the CPU counterpart of
    torch.cuda.max_memory_allocated() minus the memory allocated before the call: activations kept
    for backward, gradients and temporaries. Not included: tensors that existed before (weights,
    optimizer state from earlier steps) and scratch memory used inside a kernel (e.g. im2col
    buffers), which never appears as a tensor.
    """

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}  # storage data_ptr -> bytes
        self.current = 0
        self.peak = 0

    def _free(self, ptr: int) -> None:
        self.current -= self.live.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            _storage_ptr(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or ptr in inputs or ptr in self.live:
                continue
            self.live[ptr] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(storage, self._free, ptr)
        return out


def _storage_ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def peak_memory(fn: Callable[[], object], *, device: torch.device) -> int:
    """Peak bytes allocated during one call above what was allocated before it: CUDA's allocator
    statistics on a GPU, `LiveTensorBytes` elsewhere."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with LiveTensorBytes() as tracker:
        fn()
    return tracker.peak


def training_step(
    model: nn.Module, run: Callable[[], torch.Tensor], *, lr: float = 1e-4
) -> Callable[[], None]:
    """A closure running one step: out = run() (the model's forward); loss = mean(out^2);
    backward; Adam. The loss is a stand-in with the cost of the real one (an MSE against the
    noise): what matters for timing is the forward, the backward and the optimizer update."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        run().float().pow(2).mean().backward()
        opt.step()

    return step


def forward_backward(model: nn.Module, run: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A closure running mean(run()^2).backward(), gradients reset first (no optimizer step)."""

    def closure() -> None:
        model.zero_grad(set_to_none=True)
        run().float().pow(2).mean().backward()

    return closure


def forward(model: nn.Module, run: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A closure running run() without autograd (inference). `model` is unused; it keeps the
    signature of `forward_backward`."""

    def closure() -> None:
        with torch.no_grad():
            run()

    return closure
