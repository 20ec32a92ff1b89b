"""Check for notebook 05's build exercise: the weight update around a training step.

update(loss, *, model, optimizer, ema, step, max_grad_norm) -> ||g||_2 is what train_ldm calls
after every loss (its `update_fn`; the reference is training.train.optimizer_update). Its result is
the state it leaves behind, so the check runs a few seeded updates of a tiny model with the
learner's function and with the reference, and compares the weights, the EMA weights and the
returned gradient norms.
"""

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from ldm_course.course.checks.core import CheckResult, Misconception, _compare, check_function
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.training.train import EMA, optimizer_update

# (updates, max_grad_norm, EMA decay) per case: no clipping; clipping that bites (the tiny model's
# gradient norms are above 1); a decay below the warm-up's (1 + s) / (10 + s) from step 2 on
TRAINING_UPDATE_CASES = ((4, 0.0, 0.9), (4, 0.5, 0.9), (5, 100.0, 0.2))
PARTS = ("weights", "EMA weights", "grad norms")  # compared in this order
SEE = "see the build exercise's steps in section 5"


def tiny_model(gen: torch.Generator) -> nn.Module:
    """A 3 -> 5 -> 2 MLP with weights drawn from `gen` (the global RNG untouched)."""
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


def run_updates(
    update_fn: Callable, *, seed: int, updates: int, max_grad_norm: float, decay: float
):
    """`updates` steps of SGD with momentum on a tiny model, each loss handed to update_fn;
    returns {"weights": (P,), "EMA weights": (P,), "grad norms": (updates,)}, all float64."""
    gen = torch.Generator().manual_seed(seed)
    model = tiny_model(gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = EMA(model, decay)
    x, target = torch.randn(updates, 8, 3, generator=gen), torch.randn(updates, 8, 2, generator=gen)
    norms = []
    for step in range(updates):
        loss = (model(x[step]) - target[step]).pow(2).mean()
        norm = update_fn(
            loss, model=model, optimizer=optimizer, ema=ema, step=step, max_grad_norm=max_grad_norm
        )
        if isinstance(norm, bool) or not isinstance(norm, (float, int, torch.Tensor)):
            raise TypeError(
                f"update returned {type(norm).__name__}; return the gradient norm ||g||_2 as a "
                "float (train_ldm logs it)"
            )
        norms.append(float(norm))
    return {
        "weights": torch.cat([p.detach().flatten() for p in model.parameters()]).double(),
        "EMA weights": torch.cat([v.flatten() for v in ema.shadow.values()]).double(),
        "grad norms": torch.tensor(norms, dtype=torch.float64),
    }


def compare_states(got, expected, *, equal_nan: bool = False) -> str | None:
    """None if the weights, EMA weights and norms agree; else the first part that differs."""
    for part in PARTS:
        problem = _compare(got[part], expected[part], atol=1e-5, rtol=1e-4, equal_nan=equal_nan)
        if problem:
            return f"the {part} after the updates differ: {problem}"
    return None


def _wrong_update(
    loss,
    *,
    model,
    optimizer,
    ema,
    step,
    max_grad_norm,
    zero_grad=True,
    clip_takes_effect=True,
    ema_first=False,
    fixed_decay=False,
    decay_swapped=False,
    clipped_norm=False,
    optimizer_steps=1,
):
    """optimizer_update with one mistake switched on (all off: the reference, without a scaler)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if zero_grad:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if max_grad_norm > 0 and clip_takes_effect:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if clipped_norm:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])

    def update_ema():
        d = ema.decay if fixed_decay else ema.decay_at(step)
        old, new = (1 - d, d) if decay_swapped else (d, 1 - d)
        with torch.no_grad():
            for k, v in model.state_dict().items():
                ema.shadow[k].mul_(old).add_(v.float(), alpha=new)

    if ema_first:
        update_ema()
    for _ in range(optimizer_steps):
        optimizer.step()
    if not ema_first:
        update_ema()
    return float(norm)


def _mistake(**switch) -> Callable:
    return partial(run_updates, partial(_wrong_update, **switch))


TRAINING_UPDATE_MISCONCEPTIONS = (
    Misconception(
        "no zero_grad",
        "backward() adds to .grad, so each step's gradient piles onto the last ones; call "
        f"optimizer.zero_grad(set_to_none=True) before backward: {SEE}",
        _mistake(zero_grad=False),
    ),
    Misconception(
        "clipping that never takes effect",
        "clip_grad_norm_ rescales the gradients that exist now: after backward, before "
        f"optimizer.step (before backward there are none; max_grad_norm > 0 clips): {SEE}",
        _mistake(clip_takes_effect=False),
    ),
    Misconception(
        "the EMA updated before the optimizer step",
        "the EMA averages the weights the step has just produced; update it after "
        f"optimizer.step(), or it lags one step behind: {SEE}",
        _mistake(ema_first=True),
    ),
    Misconception(
        "the EMA without warm-up",
        "a fixed decay keeps the random initial weights in the average for hundreds of steps; "
        f"use d = ema.decay_at(step) = min(decay, (1 + s) / (10 + s)): {SEE}",
        _mistake(fixed_decay=True),
    ),
    Misconception(
        "the EMA decay the wrong way round",
        "ema <- d * ema + (1 - d) * theta: the decay d (near 1) keeps the old average and 1 - d "
        f"takes in the new weights, not d * theta + (1 - d) * ema: {SEE}",
        _mistake(decay_swapped=True),
    ),
    Misconception(
        "the norm measured after clipping",
        "return the norm before clipping (clip_grad_norm_ returns it): after clipping it is "
        f"never above max_grad_norm, so the log cannot show the spikes clipping cut: {SEE}",
        _mistake(clipped_norm=True),
    ),
    Misconception(
        "optimizer.step() called twice",
        f"one loss, one optimizer step: a second step moves the weights again (Adam, momentum): {SEE}",
        _mistake(optimizer_steps=2),
    ),
)


def check_training_update(
    fn: Callable, *, quiet: bool = False, time_limit: float | None = TIME_LIMIT
) -> CheckResult:
    """fn(loss, *, model, optimizer, ema, step, max_grad_norm) -> the gradient norm before
    clipping: zero_grad, backward, ||g||_2 (and clip_grad_norm_ when max_grad_norm > 0), one
    optimizer step, then ema.shadow <- d ema.shadow + (1 - d) theta with d = ema.decay_at(step).
    Cases: a few updates without clipping, with clipping that bites, with a small EMA decay."""

    def inputs(gen: torch.Generator) -> dict:
        case = int(gen.initial_seed())
        updates, max_grad_norm, decay = TRAINING_UPDATE_CASES[case]
        return dict(seed=10 + case, updates=updates, max_grad_norm=max_grad_norm, decay=decay)

    return check_function(
        "training_update",
        partial(run_updates, fn),
        partial(run_updates, optimizer_update),
        inputs,
        cases=len(TRAINING_UPDATE_CASES),
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=TRAINING_UPDATE_MISCONCEPTIONS,
        compare=compare_states,
    )
