"""A pytest plugin beside nbval: live numbers compared within a tolerance, out of the learner's view.

A teaching cell prints its numbers plainly (``print(f"PSNR {psnr:.2f} dB")``). When the last digits
of a number depend on the CPU (a live training run, a long float reduction), the cell's metadata,
which a learner does not see, says where such numbers sit in the output and how far they may move:

    "metadata": {"replay": {"numbers": [
        {"at": "PSNR {} dB", "tol": 0.05},
        {"at": "SSIM {}", "tol": 0.002}
    ]}}

``at`` is literal text of the output with ``{}`` where a number stands (it may hold several ``{}``
and match many times, e.g. once per table row; ``"{}"`` alone matches every remaining number). For
each text output, saved and live, the patterns are applied in order: both must match equally
often, every number pair must satisfy |live - saved| <= tol (NaN fails), and the matched numbers
are masked in both texts. nbval then compares what is left verbatim, after its sanitisers, so every
other character of the output still counts. A cell without ``replay`` metadata is compared by nbval
exactly as before. On failure the report names the cell, the pattern, both numbers and the
tolerance.

Tolerances come from measured spread (`scripts/course/replay_spread.py`): with the environment
variable LDM_COURSE_REPLAY_RECORD set to a file path, every compared number is appended to it as a
JSON line {"name", "live", "saved", "tol"}. Registered in the repository's conftest.py.
"""

import copy
import math
import re
from dataclasses import dataclass

from ldm_course.course.replay import record

MASK = "<live number>"
# a decimal number: optional sign, digits with optional thousands commas, fraction, exponent; or nan/inf
NUMBER = r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"


@dataclass(frozen=True)
class NumberSpec:
    at: str  # literal output text with {} where a live number stands
    tol: float  # absolute tolerance, > 0

    @property
    def regex(self) -> re.Pattern:
        parts = [re.escape(p) for p in self.at.split("{}")]
        return re.compile(f"({NUMBER})".join(parts))


def parse_specs(metadata: dict, *, where: str) -> list[NumberSpec]:
    """Cell metadata -> its number specs; a malformed entry is an error that names the cell."""
    entries = metadata.get("replay", {}).get("numbers", [])
    specs = []
    for entry in entries:
        at, tol = entry.get("at"), entry.get("tol")
        if not isinstance(at, str) or "{}" not in at:
            raise ValueError(f"{where}: replay number {entry!r} needs 'at', text holding {{}}")
        if not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"{where}: replay number {entry!r} needs 'tol', a number > 0")
        specs.append(NumberSpec(at, float(tol)))
    return specs


def _to_float(text: str) -> float:
    return float(text.replace(",", ""))


def compare_text(saved: str, live: str, specs: list[NumberSpec]) -> tuple[str, str, list[str]]:
    """Check the live numbers of one text output against the saved ones; mask them in both.

    Returns (masked saved, masked live, problems); the masked texts go on to nbval's verbatim
    comparison, so text outside the numbers must still match exactly.
    """
    problems = []
    for spec in specs:
        saved_hits, live_hits = list(spec.regex.finditer(saved)), list(spec.regex.finditer(live))
        if len(saved_hits) != len(live_hits):
            problems.append(
                f"'{spec.at}' appears {len(live_hits)} time(s) in the live output, "
                f"{len(saved_hits)} in the saved one"
            )
            continue
        for s_hit, l_hit in zip(saved_hits, live_hits, strict=True):
            for s_num, l_num in zip(s_hit.groups(), l_hit.groups(), strict=True):
                s_val, l_val = _to_float(s_num), _to_float(l_num)
                record(spec.at, [l_val], [s_val], spec.tol)
                if not abs(l_val - s_val) <= spec.tol:  # NaN fails
                    problems.append(
                        f"'{spec.at}': live {l_num}, saved {s_num}, "
                        f"|difference| {abs(l_val - s_val):.3g} > tolerance {spec.tol:g}"
                    )
        saved, live = spec.regex.sub(_masked(spec), saved), spec.regex.sub(_masked(spec), live)
    return saved, live, problems


def _masked(spec: NumberSpec) -> str:
    return spec.at.replace("{}", MASK).replace("\\", "\\\\")


def _text_fields(output: dict) -> list[tuple[str, ...]]:
    """Paths of the text an output holds: ('text',) for a stream, ('data', mime) for a result."""
    paths = [("text",)] if isinstance(output.get("text"), str) else []
    for mime, value in output.get("data", {}).items():
        if isinstance(value, str) and mime.startswith("text/"):
            paths.append(("data", mime))
    return paths


def mask_outputs(saved: list, live: list, specs: list[NumberSpec]) -> list[str]:
    """Apply compare_text to each text field of the outputs, paired in order; mutates both lists.
    Outputs of another count or kind are left for nbval to report."""
    problems = []
    for s_out, l_out in zip(saved, live, strict=False):
        for path in _text_fields(s_out):
            if path not in _text_fields(l_out):
                continue
            s_holder = s_out if len(path) == 1 else s_out["data"]
            l_holder = l_out if len(path) == 1 else l_out["data"]
            key = path[-1]
            s_holder[key], l_holder[key], found = compare_text(s_holder[key], l_holder[key], specs)
            problems += found
    return problems


def _wrap(item, specs: list[NumberSpec]) -> None:
    compare = item.compare_outputs

    def compare_outputs(test, ref, skip_compare=None):
        test, ref = copy.deepcopy(test), copy.deepcopy(ref)  # the saved notebook stays as it is
        problems = mask_outputs(ref, test, specs)
        if problems:
            item.comparison_traceback = ["live numbers outside their tolerance:", *problems]
            return False
        return compare(test, ref, skip_compare)

    item.compare_outputs = compare_outputs


def pytest_collection_modifyitems(session, config, items) -> None:
    """Give every nbval cell with `replay` metadata the tolerant comparison."""
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or not hasattr(item, "compare_outputs"):
            continue
        specs = parse_specs(dict(cell.get("metadata", {})), where=item.nodeid)
        if specs:
            _wrap(item, specs)
