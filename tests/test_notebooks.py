"""The learner edition is exactly the stripped solved edition; the solved edition's saved outputs
show every check passing; the stripping itself behaves."""

from pathlib import Path

import nbformat
import pytest

from ldm_course.course.editions import learner_edition, sources, strip_solution
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


@pytest.mark.parametrize("name", NAMES)
def test_every_live_figure_is_checked_against_its_saved_value(name):
    """A cell that prints a live figure (≈) checks it with expect_saved, and the saved outputs of
    both editions show every such check passing (docs/NOTEBOOK_GUIDE.md)."""
    for edition in ("solutions", "notebooks"):
        nb = nbformat.read(ROOT / edition / f"{name}.ipynb", as_version=4)
        for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            text = _outputs_text(nbformat.from_dict({"cells": [cell]}))
            calls = cell.source.count("expect_saved(")
            if "≈" in text:
                assert calls, f"{edition}/{name} code cell {i} prints ≈ figures but checks none"
            assert text.count("replay ✓") == calls, f"{edition}/{name} code cell {i}: {text[-500:]}"
            assert "replay ✗" not in text
