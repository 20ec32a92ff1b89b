"""The learner edition is exactly the stripped solved edition; the solved edition's saved outputs
show every check passing; the stripping itself behaves."""

from pathlib import Path

import nbformat
import pytest

from ldm_course.course.editions import learner_edition, sources, strip_solution
from ldm_course.course.nbval_tolerance import compare_text, parse_specs
from ldm_course.course.publish import course_address

ROOT = Path(__file__).resolve().parents[1]
NAMES = [
    "01_vae",
    "02_perceptual_loss",
    "03_latent_scaling",
    "04_latent_diffusion",
    "05_end_to_end",
]


def test_strip_solution():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nprint(1)"
    assert (
        strip_solution(src)
        == 'def f(x):\n    raise NotImplementedError("exercise: replace this line with your code")\n\nprint(1)'
    )
    for bad in (
        "### BEGIN SOLUTION\nx",
        "x\n### END SOLUTION",
        "### BEGIN SOLUTION\n### BEGIN SOLUTION",
    ):
        with pytest.raises(ValueError):
            strip_solution(bad)


@pytest.mark.parametrize("name", NAMES)
def test_learner_edition_is_the_stripped_solved_edition(name):
    solved = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    learner = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    learner_path = f"notebooks/{name}.ipynb"  # stamped as course.json says (a published checkout)
    expected = learner_edition(solved, learner_path, *course_address(ROOT / "course.json"))
    assert sources(learner) == sources(expected)
    assert any("### BEGIN SOLUTION" in c.source for c in solved.cells if c.cell_type == "code")


def _outputs_text(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(
                out.get("text", "")
                if "text" in out
                else str(out.get("data", {}).get("text/plain", ""))
            )
    return "\n".join(text)


@pytest.mark.parametrize("name", NAMES)
def test_saved_outputs_show_checks(name):
    solved = _outputs_text(nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4))
    learner = _outputs_text(nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4))
    assert solved.count("✅") >= 2 and "❌" not in solved and "not attempted" not in solved
    assert learner.count("not attempted yet") >= 2 and "❌" not in learner


@pytest.mark.parametrize("name", NAMES)
def test_every_code_cell_was_executed(name):
    for edition in ("solutions", "notebooks"):
        nb = nbformat.read(ROOT / edition / f"{name}.ipynb", as_version=4)
        counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
        assert all(n is not None for n in counts), f"{edition}/{name} has unexecuted cells"
        assert not any(
            o.get("output_type") == "error"
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
        )


# what a learner must not see: the replay lives in the test harness (docs/NOTEBOOK_GUIDE.md)
MACHINERY = ("expect_saved", "replay ✓", "nbval", "≈")


def _cell_texts(cell) -> list[str]:
    """The source and every text a cell's saved outputs hold (streams, text/* results, errors)."""
    texts = [cell.source]
    for out in cell.get("outputs", []):
        texts.append(out.get("text", "") if isinstance(out.get("text"), str) else "")
        texts += [
            v
            for k, v in out.get("data", {}).items()
            if k.startswith("text/") and isinstance(v, str)
        ]
        texts += out.get("traceback", [])
    return texts


@pytest.mark.parametrize("name", NAMES)
def test_no_replay_machinery_in_the_lessons(name):
    """Teaching cells print plainly: no expect_saved, replay verdicts, nbval or ≈ marks in the
    sources or saved outputs of either edition (cell metadata, which a learner does not see, may
    hold the replay tolerances)."""
    for edition in ("solutions", "notebooks"):
        nb = nbformat.read(ROOT / edition / f"{name}.ipynb", as_version=4)
        for i, cell in enumerate(nb.cells):
            for text in _cell_texts(cell):
                found = [word for word in MACHINERY if word in text]
                assert not found, (
                    f"{edition}/{name} cell {i} ({cell.id}) shows {found}: {text[:300]!r}"
                )


def _spec_hits(cell, specs) -> list[int]:
    """How often each spec matches the saved outputs, applied in order as the plugin applies them."""
    hits = [0] * len(specs)
    for out in cell.get("outputs", []):
        texts = [out["text"]] if isinstance(out.get("text"), str) else []
        texts += [
            v
            for k, v in out.get("data", {}).items()
            if k.startswith("text/") and isinstance(v, str)
        ]
        for text in texts:
            for k, spec in enumerate(specs):
                hits[k] += len(spec.regex.findall(text))
                text, _, problems = compare_text(text, text, [spec])
                assert problems == []
    return hits


@pytest.mark.parametrize("name", NAMES)
def test_live_numbers_have_replay_tolerances_that_match_their_output(name):
    """Numbers whose last digits depend on the CPU are compared within a tolerance kept in the
    cell's metadata (replay.numbers). Each spec is well formed (text with {}, tolerance > 0),
    matches its cell's saved output in both editions, and both editions carry the same specs.
    Which numbers need one is decided by the replay itself: scripts/course/replay_settings.sh
    fails on a CPU-dependent number printed without one."""
    solved = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    learner = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    learner_cells = {c.id: c for c in learner.cells}
    with_specs = 0
    for nb, edition in ((solved, "solutions"), (learner, "notebooks")):
        for cell in nb.cells:
            where = f"{edition}/{name} cell {cell.id}"
            specs = parse_specs(dict(cell.get("metadata", {})), where=where)
            if not specs:
                continue
            assert cell.cell_type == "code", f"{where}: replay metadata on a {cell.cell_type} cell"
            with_specs += 1
            hits = _spec_hits(cell, specs)
            unmatched = [s.at for s, n in zip(specs, hits, strict=True) if n == 0]
            assert not unmatched, (
                f"{where}: replay numbers that match nothing in the saved output: {unmatched}"
            )
            if edition == "solutions":
                other = learner_cells[cell.id].get("metadata", {}).get("replay")
                assert other == cell.metadata["replay"], (
                    f"{where}: the learner edition has other replay specs"
                )
    assert with_specs >= 2, f"{name}: no cell compares its live numbers within a tolerance"


@pytest.mark.parametrize("name", NAMES)
def test_no_replay_verdicts_left_in_outputs(name):
    """A saved output never records a failed comparison (the old 'replay ✗' lines)."""
    for edition in ("solutions", "notebooks"):
        text = _outputs_text(nbformat.read(ROOT / edition / f"{name}.ipynb", as_version=4))
        assert "replay ✗" not in text and "live numbers outside their tolerance" not in text
