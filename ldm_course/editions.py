"""Solved edition (solutions/, for instructors) -> learner edition (notebooks/).

In a code cell, everything between a line `### BEGIN SOLUTION` and a line `### END SOLUTION` is the
answer; the learner edition replaces it with `raise NotImplementedError("...")` at the same indent,
so the exercise's check prints "not attempted yet" and the notebook carries on.

    python -m ldm_course.editions solutions notebooks     # write the learner edition (sources only)

The repository address for Colab installs is set once, in course.json ({"repository": "..."}), and
stamped into the `COURSE_REPO = "..."` line of every notebook's setup cell by the same command.
"""

import argparse
import json
import re
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
REPO_LINE = re.compile(r'^COURSE_REPO = "[^"\n]*"', re.M)
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


def stamp_repository(nb: nbformat.NotebookNode, url: str) -> bool:
    """Set the COURSE_REPO line of the setup cell; True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and REPO_LINE.search(cell.source):
            new = REPO_LINE.sub(f"COURSE_REPO = {json.dumps(url)}", cell.source)
            changed, cell.source = changed or new != cell.source, new
    return changed


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
    url = json.loads(args.course.read_text()).get("repository", "") if args.course.exists() else ""
    args.learner_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(args.solved_dir.glob("*.ipynb")):
        solved = nbformat.read(path, as_version=4)
        if stamp_repository(solved, url):
            nbformat.write(solved, path)
            print(f"stamped COURSE_REPO into {path}")
        nb = learner_notebook(solved)
        target = args.learner_dir / path.name
        if target.exists():  # keep the saved outputs when the sources did not change
            old = nbformat.read(target, as_version=4)
            if sources(old) == sources(nb):
                continue
            if stamp_repository(old, url) and sources(old) == sources(
                nb
            ):  # only the address changed
                nbformat.write(old, target)
                continue
        nbformat.write(nb, target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
