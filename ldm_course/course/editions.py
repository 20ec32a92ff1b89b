"""Solved edition (solutions/, for instructors) -> learner edition (notebooks/).

In a code cell, everything between a line `### BEGIN SOLUTION` and a line `### END SOLUTION` is the
answer; the learner edition replaces it with `raise NotImplementedError("...")` at the same indent,
so the exercise's check prints "not attempted yet" and the notebook carries on.

    python -m ldm_course.course.editions solutions notebooks     # write the learner edition (sources only)

The same command gives every notebook the one setup cell of ldm_course.course.publish and, when
course.json holds the repository address and its "ref", an install pinned to that ref and, for a
GitHub address, an "Open in Colab" badge. A ref that cannot hold the stamped notebooks (a commit
that exists already, a tag made before the stamp) is refused before anything is written; the order
is stamp, commit, tag, push (publish.PUBLISH_ORDER).
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from ldm_course.course.publish import check_ref, colab_url, course_address, stamp

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


def learner_edition(
    solved: nbformat.NotebookNode, learner_path: str, repository: str = "", ref: str = ""
) -> nbformat.NotebookNode:
    """The learner notebook published at `learner_path` (e.g. 'notebooks/01_vae.ipynb'): solutions
    stripped, outputs cleared, setup cell and badge stamped for its own path."""
    nb = learner_notebook(solved)
    stamp(nb, learner_path, repository, ref)
    return nb


def sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def repository_paths(paths: list[Path]) -> list[str]:
    """`paths` relative to the root of the git checkout holding them ([] outside one)."""
    if not paths:
        return []
    top = subprocess.run(
        ["git", "-C", str(paths[0].parent), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
    )
    if top.returncode != 0:
        return []
    root = Path(top.stdout.strip()).resolve()
    return [p.resolve().relative_to(root).as_posix() for p in paths]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write the learner edition from the solved edition")
    p.add_argument("solved_dir", type=Path)
    p.add_argument("learner_dir", type=Path)
    p.add_argument(
        "--course", type=Path, default=Path("course.json"), help="holds the repository address"
    )
    args = p.parse_args(argv)
    try:
        write_editions(args.solved_dir, args.learner_dir, args.course)
    except ValueError as err:  # a bad address or ref: one line, nothing written
        print(f"editions: error: {err}", file=sys.stderr)
        return 2
    return 0


def write_editions(solved_dir: Path, learner_dir: Path, course: Path) -> None:
    """Stamp the solved notebooks and write the learner edition (see the module docstring)."""
    repository, ref = course_address(course)
    solved_paths = sorted(solved_dir.glob("*.ipynb"))
    if repository:  # before anything is written
        check_ref(solved_dir, repository, ref, repository_paths(solved_paths))
    learner_dir.mkdir(parents=True, exist_ok=True)
    for path in solved_paths:
        solved = nbformat.read(path, as_version=4)
        solved_path = f"{solved_dir.name}/{path.name}"
        if stamp(solved, solved_path, repository, ref):
            nbformat.write(solved, path)
            badge = " and Colab badge" if colab_url(repository, ref, solved_path) else ""
            print(f"stamped the setup cell{badge} into {path}")
        learner_path = f"{learner_dir.name}/{path.name}"
        nb = learner_edition(solved, learner_path, repository, ref)
        target = learner_dir / path.name
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
    sys.exit(main())
