"""How every exercise check works: run the learner's function and the reference on the same seeded
inputs, compare, and when they differ say which common mistake the answer looks like.

A misconception is a known wrong answer, written as a function with the exercise's signature. When
the learner's output is wrong, each misconception is evaluated on the same inputs; if the learner's
output equals one of them (same tolerance), the check names it and says where to look. Otherwise it
probes the answer (probes.py) and says what it found, else what differs, by how much and on which
case, in one line. Whatever its values, an answer is stopped after a time limit, and fails at once
when it returns the wrong type, dtype or device or changes its inputs in place.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ldm_course.course.checks.probes import (
    changed_inputs_problem,
    device_error_hint,
    factor_problem,
    result_kind_problem,
    rng_hint,
    snapshot,
)
from ldm_course.course.checks.time_limit import (
    TIME_LIMIT,
    TimeLimitExceeded,
    call_with_limit,
    time_limit_message,
)

MAX_TEXT = 160  # characters kept of a learner's exception message


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # "passed", "failed" or "not attempted"
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def use(self, learner_fn: Callable, reference_fn: Callable) -> Callable:
        """The learner's function when it passed, otherwise the reference (so later cells still work)."""
        return learner_fn if self.passed else reference_fn

    def __bool__(self) -> bool:
        return self.passed


@dataclass(frozen=True)
class Misconception:
    """A common wrong answer. `fn` computes it, with the exercise's signature (`variants`: other
    ways to write the same mistake); `hint` names the mistake and where to look.
    `detect(learner_fn, inputs_for, got) -> bool`, when given, recognises the mistake by a property
    of the learner's function instead (fn is then one example of it)."""

    name: str
    hint: str
    fn: Callable
    variants: tuple[Callable, ...] = ()
    detect: Callable[[Callable, Callable[[], dict], Any], bool] | None = None

    @property
    def fns(self) -> tuple[Callable, ...]:
        return (self.fn, *self.variants)


@dataclass(frozen=True)
class Raised:
    """What a function raised, kept so that a misconception that raises the same error matches."""

    error: Exception

    def __str__(self) -> str:
        return f"raised {type(self.error).__name__}: {_one_line(str(self.error))}"

    def same(self, other: object) -> bool:
        return (
            isinstance(other, Raised)
            and type(other.error) is type(self.error)
            and str(other.error) == str(self.error)
        )


@dataclass(frozen=True)
class TimedOut:
    """A function stopped after its time limit."""

    seconds: float

    def __str__(self) -> str:
        return time_limit_message(self.seconds)


def _one_line(text: str, limit: int = MAX_TEXT) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _describe_value(v: Any) -> str:
    if torch.is_tensor(v):
        return f"{tuple(v.shape)}" if v.numel() != 1 else f"{v.item():.4g}"
    if isinstance(v, (list, tuple)) and v and all(torch.is_tensor(x) for x in v):
        return f"{len(v)} tensors " + ", ".join(str(tuple(x.shape)) for x in v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (int, bool, str)) or v is None:
        return repr(v)
    if isinstance(v, torch.Generator):
        return "a seeded generator"
    return f"a {type(v).__name__}"  # never a repr: it may hold whole tensors


def _describe(inputs: dict) -> str:
    """The inputs in a few words: shapes of tensors (and of lists of tensors), small values."""
    return ", ".join(
        f"{k}={_describe_value(v)}"
        if not torch.is_tensor(v) or v.numel() == 1
        else f"{k} {_describe_value(v)}"
        for k, v in inputs.items()
    )


def _as_float64(value: Any) -> torch.Tensor | None:
    if torch.is_tensor(value):
        return value.detach().double()
    if isinstance(value, (list, tuple)) and value and all(torch.is_tensor(v) for v in value):
        try:
            return torch.stack([v.detach().double() for v in value])
        except RuntimeError:
            return None
    if isinstance(value, (list, tuple)) and not all(isinstance(v, (int, float)) for v in value):
        return None
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _compare(
    got: Any, expected: Any, *, atol: float, rtol: float, equal_nan: bool = False
) -> str | None:
    """None if equal within tolerance, else what differs, in a few words (never a tensor repr).
    equal_nan: non-finite values in the same places count as equal (to match a wrong answer)."""
    expected_t = _as_float64(expected)
    got_t = _as_float64(got)
    if got_t is None:
        return (
            f"returned a {type(got).__name__}, expected a tensor of shape {tuple(expected_t.shape)}"
        )
    if got_t.shape != expected_t.shape:
        return f"shape {tuple(got_t.shape)}, expected {tuple(expected_t.shape)}"
    if torch.is_tensor(got) and torch.is_tensor(expected):
        if got.is_floating_point() != expected.is_floating_point():
            return f"dtype {got.dtype}, expected a {expected.dtype} tensor"
    finite_got, finite_exp = torch.isfinite(got_t), torch.isfinite(expected_t)
    if equal_nan and not (finite_got == finite_exp).all():
        return "non-finite values in other places"
    if not equal_nan and not finite_got.all():
        if not got_t.ndim:
            return f"returned {got_t.item()}, expected {expected_t.item():.6g}"
        where = tuple(int(i) for i in torch.nonzero(~finite_got)[0])
        return f"non-finite values (first at index {where})"
    both = finite_got & finite_exp
    err = torch.where(both, (got_t - expected_t).abs(), torch.zeros_like(got_t))
    bad = err > atol + rtol * expected_t.abs().where(both, torch.zeros_like(got_t))
    if bad.any():
        if not got_t.ndim:
            return (
                f"returned {got_t.item():.6g}, expected {expected_t.item():.6g} "
                f"(tolerance {atol:g} + {rtol:g}*|expected|)"
            )
        where = tuple(int(i) for i in torch.nonzero(bad)[0])
        return (
            f"largest error {err.max().item():.3g} (tolerance {atol:g} + {rtol:g}*|expected|), "
            f"first at index {where}"
        )
    return None


def _largest_error(got: Any, expected: Any) -> float | None:
    got_t, expected_t = _as_float64(got), _as_float64(expected)
    if got_t is None or expected_t is None or got_t.shape != expected_t.shape:
        return None
    return (got_t - expected_t).abs().max().item() if got_t.numel() else 0.0


@contextmanager
def keep_rng() -> Iterator[None]:
    """Run code that may draw from the global RNG, then restore it: a check leaves the notebook's
    random stream as it found it (and every evaluation starts from the same state). The GPUs'
    streams too, once CUDA is in use."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        yield


def evaluate(
    fn: Callable,
    inputs: dict,
    *,
    time_limit: float | None = TIME_LIMIT,
    global_seed: int | None = None,
) -> Any:
    """fn(**inputs), or Raised(error) if it raised anything but NotImplementedError, or TimedOut if
    it ran past time_limit seconds. global_seed: seed the global RNG first (to see whether the
    result depends on it)."""
    try:
        with keep_rng():
            if global_seed is not None:
                torch.manual_seed(global_seed)
            return call_with_limit(fn, inputs, time_limit)
    except NotImplementedError:
        raise
    except TimeLimitExceeded:
        return TimedOut(time_limit)
    except Exception as err:  # a learner's bug is reported, never raised
        return Raised(err)


def _same(got: Any, wrong: Any, compare: Callable) -> bool:
    if isinstance(got, TimedOut) or isinstance(wrong, TimedOut):
        return False
    if isinstance(got, Raised) or isinstance(wrong, Raised):
        return isinstance(got, Raised) and got.same(wrong)
    try:
        return compare(got, wrong, equal_nan=True) is None
    except Exception:  # a malformed answer matches no misconception
        return False


def diagnose(
    misconceptions: tuple[Misconception, ...],
    learner_fn: Callable,
    history: list[tuple[Callable[[], dict], Any]],
    compare: Callable,
) -> Misconception | None:
    """The first misconception whose answers equal the learner's on every case so far (the last
    one failed), if any. history: (inputs_for, learner's output) per case."""
    for m in misconceptions:
        if m.detect is not None:
            inputs_for, got = history[-1]
            try:
                if m.detect(learner_fn, inputs_for, got):
                    return m
            except Exception:  # a detector that cannot run on this answer does not match
                pass
            continue
        for fn in m.fns:
            try:
                if all(
                    _same(got, evaluate(fn, inputs_for()), compare) for inputs_for, got in history
                ):
                    return m
            except NotImplementedError:
                continue
    return None


def case_index(gen: torch.Generator, seed: int = 0) -> int:
    """The case number of a generator that check_function made (seeded with seed + case)."""
    return int(gen.initial_seed()) - seed


def report(quiet: bool, result: CheckResult) -> CheckResult:
    if not quiet:
        print(result.message)
    return result


def not_attempted(name: str, quiet: bool) -> CheckResult:
    return report(
        quiet,
        CheckResult(
            name,
            "not attempted",
            f"⏳ {name}: not attempted yet; the notebook carries on with ldm_course's reference",
        ),
    )


def probe(
    learner_fn: Callable,
    inputs_for: Callable[[], dict],
    got: Any,
    expected: Any,
    compare: Callable,
    time_limit: float | None,
) -> str | None:
    """What a wrong answer that no misconception matches gets wrong, if a probe can tell:
    tensors on two devices, a dependence on the global RNG, a constant factor."""
    if isinstance(got, Raised):
        hint = device_error_hint(got.error)
        return f"{hint} ({got})" if hint else None
    runs = [
        evaluate(learner_fn, inputs_for(), time_limit=time_limit, global_seed=seed)
        for seed in (1, 2)
    ]
    comparable = _same(runs[0], runs[0], compare)  # False for values no comparison understands
    if comparable and not _same(*runs, compare):
        return rng_hint(inputs_for())
    try:
        return factor_problem(got, expected, inputs_for())
    except Exception:  # an answer of an odd structure: the generic line says what differs
        return None


def check_function(
    name: str,
    learner_fn: Callable,
    reference_fn: Callable,
    make_inputs: Callable[[torch.Generator], dict],
    *,
    cases: int = 3,
    seed: int = 0,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    quiet: bool = False,
    misconceptions: tuple[Misconception, ...] = (),
    compare: Callable[..., str | None] | None = None,
    verify: Callable[[Any, dict], str | None] | None = None,
    time_limit: float | None = TIME_LIMIT,
    number_ok: bool = False,
) -> CheckResult:
    """Compare learner_fn(**inputs) with reference_fn(**inputs) on `cases` seeded inputs.

    make_inputs(generator) is called afresh for every evaluation, so a function that changes its
    inputs (or draws from a generator among them) cannot change what the others see.
    compare(got, expected, equal_nan=False) -> None or what differs (default: one tensor within
    atol + rtol * |expected|). verify(got, inputs) -> None or a problem: a further property of a
    correct answer (e.g. that a loss carries a gradient). time_limit: seconds one call of
    learner_fn may take (None: no limit). number_ok: the answer is one number, and a Python float
    or a tensor of any float dtype will do (otherwise its type and dtype must be the reference's).

    In this order, the first that applies is reported: stopped after the time limit; the wrong
    type, dtype or device; an input changed in place; a misconception; what a probe finds (two
    devices, the global RNG, a constant factor); what differs.
    """
    compare = compare or partial(_compare, atol=atol, rtol=rtol)
    worst: float | None = 0.0
    history: list[tuple[Callable[[], dict], Any]] = []  # (inputs_for, learner's output) per case

    def failed(message: str) -> CheckResult:
        return report(quiet, CheckResult(name, "failed", f"❌ {name}: {message}"))

    for case in range(cases):

        def inputs_for(case: int = case) -> dict:
            return make_inputs(torch.Generator().manual_seed(seed + case))

        with keep_rng():
            expected = reference_fn(**inputs_for())
        inputs = inputs_for()
        before = snapshot(inputs)
        try:
            got = evaluate(learner_fn, inputs, time_limit=time_limit)
        except NotImplementedError:
            return not_attempted(name, quiet)
        where = f"on case {case + 1} of {cases} ({_describe(inputs)})"
        if isinstance(got, TimedOut):
            return failed(f"{got} {where}")
        history.append((inputs_for, got))
        if isinstance(got, Raised):
            problem = str(got)
        else:
            at_once = result_kind_problem(
                got, expected, number_ok=number_ok
            ) or changed_inputs_problem(before)
            if at_once:
                return failed(f"{at_once} {where}")
            try:
                problem = compare(got, expected)
            except Exception as err:  # a malformed answer: say so in one line
                problem = f"returned something that cannot be compared ({_one_line(str(err))})"
        if problem:
            mistake = diagnose(misconceptions, learner_fn, history, compare)
            if mistake is not None:
                return failed(f"looks like {mistake.name}: {mistake.hint} (case {case + 1})")
            found = probe(learner_fn, inputs_for, got, expected, compare, time_limit)
            return failed(f"{found or problem} {where}")
        if verify is not None:
            try:
                problem = verify(got, inputs)
            except Exception as err:  # e.g. a graph that cannot be differentiated
                problem = f"{type(err).__name__} while checking the gradient: {_one_line(str(err))}"
            if problem:
                return failed(f"{problem} {where}")
        error = _largest_error(got, expected)
        worst = None if worst is None or error is None else max(worst, error)
    detail = f", largest error {worst:.1e}" if worst is not None else ""
    return report(
        quiet, CheckResult(name, "passed", f"✅ {name}: passed ({cases} seeded cases{detail})")
    )
