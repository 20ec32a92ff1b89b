"""Saved notebook outputs that replay on any CPU: exact text verbatim, live figures within a tolerance.

PyTorch and oneDNN choose kernels by instruction set (AVX2, AVX-512, NEON, ...) and thread count,
and promise bit-identical results only on the same platform. A live training run, or an evaluation
over many images, therefore ends a few last digits apart on another CPU, and rounding the printout
cannot hide that (a value near a rounding boundary flips). A notebook prints two kinds of output:

* **exact text**: shapes, counts, names, settings, exact arithmetic, check verdicts. Printed as
  usual; `pytest --nbval` compares it verbatim.
* **live figures**: printed through `approx`, which puts `≈` before the number. The sanitiser
  `notebooks/nbval_sanitize.cfg` replaces each `≈<number>` before comparing, and `expect_saved`
  checks every such figure in the cell against the value saved when the notebook was executed,
  with a tolerance chosen from the spread measured across instruction sets and thread counts.
  Its verdict line is exact text, so a broken implementation still fails the replay.

Setting the environment variable LDM_COURSE_REPLAY_RECORD to a file path makes `expect_saved`
append each figure's live value to that file (one JSON object a line); scripts/course/replay_spread.py
uses it to measure the spread that the tolerances come from.
"""

import json
import math
import os

import torch

APPROX = "≈"
RECORD_ENV = "LDM_COURSE_REPLAY_RECORD"


def approx(value: float, spec: str = ".2f") -> str:
    """A live figure as text: '≈' + format(value, spec), e.g. approx(0.0784, '.3f') -> '≈0.078'.

    A width in `spec` pads in front of the '≈' (approx(3.1, '6.2f') -> '  ≈3.10'), so tables align.
    """
    text = format(float(value), spec)
    number = text.lstrip()
    return text[: len(text) - len(number)] + APPROX + number


def approx_list(values, spec: str = ".2f") -> str:
    """A list of live figures, e.g. ['≈0.21', '≈0.13']."""
    return "[" + ", ".join(repr(approx(v, spec)) for v in values) + "]"


def _as_floats(name: str, what: str, value) -> list[float]:
    """One number, a sequence of numbers or a tensor -> a flat list of floats."""
    if torch.is_tensor(value):
        return [float(v) for v in value.detach().flatten().tolist()]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in _as_floats(name, what, v)]
    try:
        return [float(value)]
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: {what} must be a number or numbers, got {type(value).__name__}"
        ) from None


def record(name: str, live: list[float], saved: list[float], tol: float) -> None:
    """Append one compared figure to the file named by LDM_COURSE_REPLAY_RECORD (if set)."""
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "live": live, "saved": saved, "tol": tol}) + "\n")


def _show(values: list[float]) -> str:
    text = ", ".join(f"{v:.6g}" for v in values)
    return text if len(values) == 1 else f"[{text}]"


def _within(live: list[float], saved: list[float], tol: float) -> bool:
    """Equally many values, each within tol (NaN fails). Another count is a difference too: a run
    with other settings logs another number of steps."""
    return len(live) == len(saved) and all(
        abs(a - b) <= tol for a, b in zip(live, saved, strict=True)
    )


def expect_saved(
    figures: dict[str, tuple[float, float, float]], *, device: torch.device | str = "cpu"
) -> None:
    """Compare live figures with the values saved with the notebook; print one verdict.

    figures: name -> (live, saved, absolute tolerance); live and saved are each one number, or
    equally many (a list or a tensor). A figure passes when every |live - saved| <= tolerance (NaN
    fails). The saved values come from a CPU run, so on another device (a GPU run uses other
    settings) nothing is compared and the verdict says so.
    Returns nothing (a notebook cell would display it): the printed verdict is what nbval compares.
    """
    if not figures:
        raise ValueError("expect_saved needs at least one figure: {name: (live, saved, tolerance)}")
    checked = {}
    for name, entry in figures.items():
        if len(entry) != 3:
            raise ValueError(f"{name}: give (live value, saved value, tolerance), got {entry!r}")
        live, saved = _as_floats(name, "live", entry[0]), _as_floats(name, "saved", entry[1])
        tol = float(entry[2])
        if not (all(map(math.isfinite, saved)) and math.isfinite(tol) and tol > 0):
            raise ValueError(
                f"{name}: saved values and tolerance must be finite, tolerance > 0; got {saved}, {tol}"
            )
        checked[name] = (live, saved, tol)
    kind = torch.device(device).type
    if kind != "cpu":
        print(
            f"replay: {len(checked)} live figure(s) not compared on {kind} (their saved values come from a CPU run)"
        )
        return
    for name, (live, saved, tol) in checked.items():
        record(name, live, saved, tol)
    failed = [n for n, (live, saved, tol) in checked.items() if not _within(live, saved, tol)]
    if not failed:
        print(f"replay ✓ {', '.join(checked)}: within tolerance of the saved run")
        return
    for name in failed:
        live, saved, tol = checked[name]
        print(
            f"replay ✗ {name} = {_show(live)}, saved {_show(saved)} ± {tol:g}: if you changed the "
            "settings above, expected; otherwise the implementation behaves differently from the saved run"
        )
