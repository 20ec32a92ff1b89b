"""Solved edition (solutions/, for instructors) -> learner edition (notebooks/).

In a code cell, everything between a line `### BEGIN SOLUTION` and a line `### END SOLUTION` is the
answer; the learner edition replaces it with `raise NotImplementedError("...")` at the same indent,
so the exercise's check prints "not attempted yet" and the notebook carries on.

    python -m ldm_course.course.editions solutions notebooks     # write the learner edition (sources only)

The same command gives every notebook the one setup cell of ldm_course.course.publish and, when
course.json holds the repository address, an "Open in Colab" badge and an install pinned to the
tag or commit it was stamped from.
"""

import argparse
import re
from pathlib import Path

import nbformat

from ldm_course.course.publish import course_address, stamp

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("exercise: replace this line with your code")'


def strip_solution(source: str) -> str:
    """Replace each BEGIN/END SOLUTION block by the stub; unbalanced markers are an error."""
    out, inside, indent = [], False, ""
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"nested '{BEGIN}' in:\n{source}")
            inside, indent = True, re.match(r"\s*", line).group(0)
            out.append(f"{indent}{STUB}")
        elif stripped == END:
            if not inside:
                raise ValueError(f"'{END}' without '{BEGIN}' in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{BEGIN}' without '{END}' in:\n{source}")
    return "\n".join(out)


def learner_notebook(solved: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy with solutions stripped from code cells and all outputs cleared (they are re-run)."""
    nb = nbformat.from_dict(solved)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solution(cell.source)
            cell.outputs, cell.execution_count = [], None
    return nb


def sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="write the learner edition from the solved edition")
    p.add_argument("solved_dir", type=Path)
    p.add_argument("learner_dir", type=Path)
    p.add_argument(
        "--course", type=Path, default=Path("course.json"), help="holds the repository address"
    )
    args = p.parse_args(argv)
    repository, ref = course_address(args.course)
    args.learner_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.solved_dir.glob("*.ipynb")):
        solved = nbformat.read(path, as_version=4)
        if stamp(solved, f"{args.solved_dir.name}/{path.name}", repository, ref):
            nbformat.write(solved, path)
            print(f"stamped the setup cell{' and Colab badge' if repository else ''} into {path}")
        learner_path = f"{args.learner_dir.name}/{path.name}"
        nb = learner_notebook(solved)
        stamp(nb, learner_path, repository, ref)
        target = args.learner_dir / path.name
        if target.exists():  # keep the saved outputs when the sources did not change
            old = nbformat.read(target, as_version=4)
            if sources(old) == sources(nb):
                continue
            if stamp(old, learner_path, repository, ref) and sources(old) == sources(nb):
                nbformat.write(old, target)  # only the stamp changed: outputs still hold
                continue
        nbformat.write(nb, target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
