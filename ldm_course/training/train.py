"""The training loop shared by the VAE and the latent U-Net: deterministic batches and noise,
cosine learning rate, EMA, atomic checkpoints every few steps, exact resume, tqdm progress.

Determinism by construction: the batch at step s is a function of (seed, s) and every random draw
of step s comes from a generator seeded with (seed, s). Nothing depends on how many steps ran
before in this process, so a run killed at step s and resumed ends where an uninterrupted run ends.
A loss or weights that turn nan or inf stop the run (TrainingDiverged); no such file is written.
"""

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ldm_course.config import to_dict
from ldm_course.infra.checkpoint import (
    load_json,
    load_optimizer,
    load_tensors,
    load_weights,
    non_finite,
    optimizer_tensors,
    save_json,
    save_tensors,
)
from ldm_course.infra.distributed import World, mean_over_ranks
from ldm_course.infra.precision import autocast, choose_precision, describe, grad_scaler
from ldm_course.infra.run_folder import check_free_space, check_same_run
from ldm_course.infra.stops import TrainingStopped, stop_requests


def cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, steps: int) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr at the last step (Loshchilov & Hutter 2017)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for every random draw of one step; identical on every rank and machine."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_indices(step: int, *, n: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the global batch at `step`: epochs are seeded permutations, the last partial batch dropped."""
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the dataset ({n} items)")
    per_epoch = n // batch_size
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))  # (n,)
    return perm[k * batch_size : (k + 1) * batch_size]  # (batch_size,)


def group_batch_indices(
    step: int, *, groups: torch.Tensor, batch_size: int, seed: int
) -> torch.Tensor:
    """Like batch_indices, but an epoch visits every group (e.g. a base emoji with its skin-tone
    variants) once, through one member drawn uniformly: each group weighs the same, however many
    near-duplicate members it has. groups: (N,) ids in 0..G-1. A pure function of the step, so a
    resumed run draws the same batches."""
    counts = torch.bincount(groups)  # (G,)
    if (counts == 0).any():
        raise ValueError("group ids must be 0..G-1 with every id used (np.unique return_inverse)")
    num_groups = len(counts)
    if batch_size > num_groups:
        raise ValueError(
            f"batch_size={batch_size} is larger than the number of groups ({num_groups})"
        )
    per_epoch = num_groups // batch_size
    epoch, k = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 7919 + epoch)
    perm = torch.randperm(num_groups, generator=gen)[k * batch_size : (k + 1) * batch_size]  # (B,)
    u = torch.rand(num_groups, generator=gen)[perm]  # (B,) which member of each group
    order = torch.argsort(groups, stable=True)  # (N,) members of group 0, then group 1, ...
    starts = torch.cumsum(counts, 0) - counts  # (G,)
    member = (u * counts[perm]).long().clamp(max=counts[perm] - 1)  # (B,)
    return order[starts[perm] + member]  # (B,)


class EMA:
    """An exponential moving average of the weights (Polyak averaging; the weights samples use):

        theta_ema <- d_s * theta_ema + (1 - d_s) * theta,   d_s = decay_at(s)

    after the optimizer step of every step s (from 0). `shadow` holds theta_ema: one float32
    tensor per entry of model.state_dict(), under the same names; non-float entries (counters)
    are copied, not averaged."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        """d_s = min(decay, (1 + s) / (10 + s)): a warm-up, so the first steps' random weights
        fade out quickly (d_0 = 0.1, d_90 = 0.91), then the configured decay."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(
            {k: v.to(model.state_dict()[k].dtype) for k, v in self.shadow.items()}
        )

    @contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[None]:
        """Inside: `model` holds the EMA weights (to sample a preview); after: its own again."""
        backup = {k: v.clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield
        finally:
            model.load_state_dict(backup)


def optimizer_update(
    loss: torch.Tensor,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA | None,
    step: int,
    max_grad_norm: float,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One update of the weights from `loss`; returns the global L2 norm of the gradients
    ||g||_2 = sqrt(sum_p ||g_p||^2), measured before clipping.

      1. zero the gradients, backward (fp16: of loss * scale, so small gradients do not underflow)
      2. unscale them (fp16) and measure ||g||_2; max_grad_norm > 0: g <- g * min(1, max / ||g||_2)
      3. the optimizer step (fp16: skipped if a gradient is inf or nan), then the scaler's update
      4. the EMA of the weights, ema.update(model, step)

    `scaler`: None or a disabled GradScaler (fp32, bf16) leaves steps 1-3 unscaled."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # a no-op when disabled; step() then does not unscale again
    else:
        loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    if max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        norm = torch.nn.utils.get_total_norm(grads)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if ema is not None:
        ema.update(model, step)
    return float(norm)


# update_fn(loss, *, model, optimizer, ema, step, max_grad_norm) -> grad norm: optimizer_update
# without the scaler (notebook 05's exercise)
UpdateFn = Callable[..., float]
# watch(step, model): sees the model at the listed steps (course/progress.py collects frames)
WatchFn = Callable[[int, nn.Module], None]


def check_watch(watch: WatchFn | None, watch_at: Sequence[int], steps: int) -> tuple[int, ...]:
    """watch_at as a sorted tuple of distinct steps in 0..steps, or a clear error."""
    bad = [s for s in watch_at if isinstance(s, bool) or not isinstance(s, int)]
    bad = bad or [s for s in watch_at if not 0 <= s <= steps]
    if bad:
        raise ValueError(
            f"watch_at={list(watch_at)}: {bad[0]!r} is not a step in 0..{steps} (0 = before the "
            f"first step, {steps} = the end); pass whole numbers in that range, e.g. "
            "progress_steps(steps)"
        )
    if watch_at and watch is None:
        raise ValueError("watch_at lists steps but watch is None; pass watch=fn(step, model)")
    return tuple(sorted(set(watch_at)))


def call_watch(
    step: int, *, fn: WatchFn, model: nn.Module, ema: EMA | None = None, trained: nn.Module
) -> None:
    """fn(step, model) with `model` in eval mode, the EMA weights in `trained` (a part of `model`)
    when there is an EMA, under no_grad and a seeded global RNG; afterwards the weights, each
    module's train/eval mode and the global RNG are as before, so watching changes no result."""
    modes = {m: m.training for m in model.modules()}
    device = next(trained.parameters()).device
    applied = ema.applied_to(trained) if ema is not None else nullcontext()
    try:
        with torch.no_grad(), global_torch_state(0, device=device), applied:
            model.eval()
            fn(step, model)
    finally:
        for m, mode in modes.items():
            m.train(mode)


@contextmanager
def global_torch_state(seed: int, *, num_threads: int = 0, device: torch.device) -> Iterator[None]:
    """Inside: torch's global RNG seeded with `seed` (nn.Module constructors draw initial weights
    from it) and `num_threads` CPU threads (0: unchanged). On exit both are as the caller had them,
    so a notebook that trains a model draws the same numbers afterwards as if it had not."""
    threads = torch.get_num_threads()
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    mps_state = torch.mps.get_rng_state() if device.type == "mps" else None
    try:
        if num_threads:
            torch.set_num_threads(num_threads)
        torch.default_generator.manual_seed(seed)
        if cuda_states is not None:
            torch.cuda.manual_seed_all(seed)
        if mps_state is not None:
            torch.mps.manual_seed(seed)
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        if mps_state is not None:
            torch.mps.set_rng_state(mps_state)


@contextmanager
def network_rng(gen: torch.Generator, device: torch.device) -> Iterator[None]:
    """Inside: torch's global RNG, from which a network draws on its own (nn.Dropout's masks, on
    the CPU and on `device`), seeded with a number drawn from a copy of the step's generator `gen`.
    The network's draws are then a function of (seed, step) like every other draw of the step, so
    a resumed run repeats them; `gen`'s own draws are the same as without it (the copy is drawn
    from, not `gen`). On exit the global RNG is as the caller had it."""
    copy = torch.Generator().set_state(gen.get_state())
    derived = int(torch.randint(2**62, (), generator=copy))
    with global_torch_state(derived, device=device):
        yield


def run_config(cfg: Any, inputs: dict) -> dict:
    """config.json: the task, every setting of `cfg`, then what the run trained on (`inputs`, e.g.
    the data's fingerprint). A resume must match it (run_folder.check_same_run)."""
    return {"task": inputs["task"], **to_dict(cfg), **inputs}


@dataclass
class Loop:
    """One run, as `fit` needs it. `cfg` is a VAETrainConfig or LDMTrainConfig (steps, seed, lr
    schedule, logging, checkpoint intervals, precision, max_grad_norm); `inputs` what the run
    trains on besides its settings ("task", data and latent fingerprints: run_config);
    `step_fn(step, generator) -> (loss, parts)` is one forward pass (fit runs it under autocast
    when the precision is bf16 or fp16)."""

    run_dir: Path
    cfg: Any
    inputs: dict
    model: nn.Module  # the unwrapped model (what is saved)
    optimizer: torch.optim.Optimizer
    step_fn: Callable[[int, torch.Generator], tuple[torch.Tensor, dict[str, float]]]
    artifacts: Callable[[int, dict], None] | None = None  # writes grids/plots next to the run
    export: Callable[[Path], None] | None = None  # writes model.safetensors (inference weights)
    ema: EMA | None = None
    world: World = field(default_factory=World)
    progress: bool = True
    update_fn: UpdateFn | None = None  # in place of optimizer_update (no scaler: not for fp16)
    watch: Callable[[int], None] | None = None  # call_watch for one step, on the main process
    watch_at: tuple[int, ...] = ()  # steps (0..cfg.steps) watch is called after

    @property
    def config(self) -> dict:
        """What config.json holds (run_config)."""
        return run_config(self.cfg, self.inputs)

    def lr_at(self, step: int) -> float:
        c = self.cfg
        return cosine_lr(step, lr=c.lr, min_lr=c.min_lr, warmup_steps=c.warmup_steps, steps=c.steps)


def fit(loop: Loop, *, resume: bool = False) -> dict[str, list[float]]:
    """Run (or resume) the loop to `loop.cfg.steps`; returns the history {"step": [...], "loss": [...], ...}.
    Ctrl-C or SIGTERM: a checkpoint at the step it came in, then TrainingStopped (infra/stops.py)."""
    with stop_requests() as stop:  # signals recorded for the whole run, restored after
        device = loop.world.device
        precision = choose_precision(device, loop.cfg.precision)
        scaler = grad_scaler(device, precision)  # a pass-through unless fp16
        if loop.update_fn is not None and precision == "fp16":
            raise ValueError(
                "update_fn has no gradient scaler, but this run trains in fp16; use "
                "--set precision=bf16 or fp32, or train with the built-in update (update_fn=None)"
            )
        run_dir = Path(loop.run_dir)
        ckpt = run_dir / "checkpoint.safetensors"
        start, history = 0, {"step": [], "seconds": []}
        if resume and ckpt.exists():
            start, history = restore(loop, run_dir, precision, scaler)
        elif ckpt.exists():
            raise FileExistsError(
                f"{run_dir} already holds a checkpoint; pass --resume to continue it "
                "or choose a new --run-dir (nothing was overwritten)"
            )
        if loop.world.is_main:
            check_free_space(run_dir, run_bytes(loop), "--run-dir")
        if not ckpt.exists() and loop.world.is_main:
            save_json(run_dir / "config.json", loop.config)
        if loop.cfg.precision != "fp32" and loop.world.is_main:
            print(describe(precision, device))  # the choice "auto" made, or the one asked for
        elapsed = history["seconds"][-1] if history["seconds"] else 0.0
        t0 = time.perf_counter() - elapsed
        bar = tqdm(
            range(start, loop.cfg.steps),
            initial=start,
            total=loop.cfg.steps,
            disable=not (loop.progress and loop.world.is_main),
            desc=run_dir.name,
            dynamic_ncols=True,
        )
        if loop.watch is not None and start == 0 and 0 in loop.watch_at and loop.world.is_main:
            loop.watch(0)
        loop.model.train()
        for step in bar:
            for group in loop.optimizer.param_groups:
                group["lr"] = loop.lr_at(step)
            with autocast(device, precision):
                loss, parts = loop.step_fn(step, step_generator(loop.cfg.seed, step))
            check_finite_loss(loop, step + 1, loss, parts)  # before it reaches the weights
            update = dict(
                model=loop.model,
                optimizer=loop.optimizer,
                ema=loop.ema,
                step=step,
                max_grad_norm=loop.cfg.max_grad_norm,
            )
            if loop.update_fn is None:
                parts["grad_norm"] = optimizer_update(loss, scaler=scaler, **update)
            else:
                parts["grad_norm"] = float(loop.update_fn(loss, **update))
            done = step + 1
            if (loop.cfg.log_every and done % loop.cfg.log_every == 0) or done == loop.cfg.steps:
                parts = {k: mean_over_ranks(v, loop.world) for k, v in parts.items()}
                history["step"].append(done)
                history["seconds"].append(time.perf_counter() - t0)
                for k, v in parts.items():
                    history.setdefault(k, []).append(v)
                bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()})
            if loop.world.is_main:
                if (
                    loop.cfg.checkpoint_every and done % loop.cfg.checkpoint_every == 0
                ) or done == loop.cfg.steps:
                    save_checkpoint(loop, ckpt, done, history, precision, scaler)
                if (
                    loop.artifacts
                    and loop.cfg.sample_every
                    and (done % loop.cfg.sample_every == 0 or done == loop.cfg.steps)
                ):
                    loop.artifacts(done, history)
                if loop.watch is not None and done in loop.watch_at:
                    loop.watch(done)
            if done < loop.cfg.steps and (signum := stop.agreed(loop.world)):
                stop_here(loop, ckpt, done, history, precision, scaler, signum)
        if loop.world.is_main:
            save_json(run_dir / "history.json", history)
            if loop.export:
                loop.export(run_dir / "model.safetensors")
        return history


def stop_here(loop, ckpt, step, history, precision, scaler, signum) -> None:
    """A stop asked for by a signal: the checkpoint at `step` (exact resume), then TrainingStopped."""
    if loop.world.is_main:
        save_checkpoint(loop, ckpt, step, history, precision, scaler)
    raise TrainingStopped(signum=signum, step=step, run_dir=str(loop.run_dir))


def run_bytes(loop: Loop) -> int:
    """About what a run writes at once: the checkpoint (model, EMA, Adam's two moments) twice
    (the old one stays until the new one is complete), model.safetensors, and 8 MB of figures."""
    model = sum(v.numel() * v.element_size() for v in loop.model.state_dict().values())
    return 2 * 4 * model + model + 8_000_000


def save_checkpoint(
    loop: Loop,
    path: Path,
    step: int,
    history: dict,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    tensors = {f"model.{k}": v for k, v in loop.model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_tensors(loop.optimizer)
    tensors.update(opt_tensors)
    if loop.ema is not None:
        tensors.update({f"ema.{k}": v for k, v in loop.ema.shadow.items()})
    meta = {"step": step, "history": history, "optimizer": opt_meta, "precision": precision}
    if scaler is not None and scaler.is_enabled():
        meta["grad_scaler"] = scaler.state_dict()  # scale and growth tracker: exact resume
    bad = non_finite(tensors)  # a finite loss can still leave inf weights (or moments) behind
    if bad:
        raise diverged(loop, step, f"the weights are not finite ({bad[0]} holds nan or inf)")
    save_tensors(path, tensors, meta)
    if loop.export:
        loop.export(path.parent / "model.safetensors")


def restore(
    loop: Loop,
    run_dir: Path,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[int, dict]:
    """Load model, optimizer, EMA and gradient scaler; refuse a run whose config.json differs from
    this one (in its settings or in what it trained on) or that trained in another precision."""
    check_same_run(load_json(run_dir / "config.json"), loop.config, run_dir)
    tensors, meta = load_tensors(run_dir / "checkpoint.safetensors")
    before = meta["precision"]
    if before != precision:
        raise ValueError(
            f"--resume: {run_dir} trained in {before}, this device would continue in {precision}; "
            f"resume it with --set precision={before} (or on a device that supports it)"
        )
    if scaler is not None and scaler.is_enabled():  # fp16: saved with its scaler's state
        scaler.load_state_dict(meta["grad_scaler"])
    load_weights(loop.model, _strip(tensors, "model."), source=str(run_dir))
    load_optimizer(
        loop.optimizer,
        {k: v for k, v in tensors.items() if k.startswith("opt.")},
        meta["optimizer"],
    )
    if loop.ema is not None:
        loop.ema.shadow = {k: v.float() for k, v in _strip(tensors, "ema.").items()}
    return meta["step"], meta["history"]


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class TrainingDiverged(ValueError):
    """The loss or the weights became nan or inf: training stopped, nothing of that step saved."""


def diverged(loop: Loop, step: int, what: str) -> TrainingDiverged:
    """The one-line error of a run that diverged at `step` (counted from 1): what was not finite,
    which checkpoint is kept, and the usual cure (a lower learning rate)."""
    ckpt = Path(loop.run_dir) / "checkpoint.safetensors"
    kept = "no checkpoint was written yet"
    if ckpt.exists():
        kept = f"the last checkpoint, {ckpt} (step {load_tensors(ckpt)[1]['step']}), is kept"
    steps, lr = getattr(loop.cfg, "steps", "?"), getattr(loop.cfg, "lr", None)
    return TrainingDiverged(
        f"training stopped at step {step} of {steps}: {what}; nothing of this step was saved and "
        f"{kept}; train again in a new run folder with a lower lr"
        + (f" (this run: lr={lr:g})" if lr is not None else "")
    )


def check_finite_loss(loop: Loop, step: int, loss: torch.Tensor, parts: dict[str, float]) -> None:
    """Refuse a loss that is nan or inf, naming the terms of `parts` that are. (With fp16 the
    gradient scaler skips steps whose *gradients* overflow; a non-finite loss itself is divergence.)"""
    bad = {k: v for k, v in parts.items() if not math.isfinite(v)}
    if bad or not math.isfinite(loss.item()):
        terms = ", ".join(f"{k}={v}" for k, v in (bad or {"loss": loss.item()}).items())
        raise diverged(loop, step, f"the loss is not finite ({terms})")
