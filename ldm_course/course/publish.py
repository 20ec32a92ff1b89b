"""Publishing the notebooks for Colab: one setup cell for all five, an "Open in Colab" badge, and
the package install pinned to the tag the stamped notebooks are committed under.

A notebook opened on Colab arrives alone, without the package: its setup cell installs
`ldm_course` from the course's repository at a fixed ref, so the notebook and the code it imports
cannot drift apart. The address comes from course.json ({"repository": "...", "ref": "v1.0"});
without one nothing is invented: no badge, and the setup cell says what to do. The ref must be able
to hold the stamped notebooks, so the order is: stamp, commit, tag that commit, push (PUBLISH_ORDER);
a commit that exists already, or a tag made before the stamp, is refused before anything is written.

    python -m ldm_course.course.editions solutions notebooks     # stamps, then writes the learner edition
"""

import json
import re
import subprocess
from pathlib import Path

import nbformat

SETUP_CELL = """\
# Setup: on Colab, install the course package first; everywhere, pick the device and seed.
COURSE_REPO = ""  # the course's git address, stamped from course.json by `python -m ldm_course.course.editions`
COURSE_REF = ""  # the tag or commit stamped with it: the package version these notebooks were made with
import importlib.util
import os
import subprocess
import sys

ON_COLAB = "google.colab" in sys.modules
if importlib.util.find_spec("ldm_course") is None:
    if not COURSE_REPO:
        raise RuntimeError(
            "ldm_course is not installed. On your computer, run `pip install -e .` in the course folder. "
            "On Colab, open the notebooks your instructor published: their setup cell names the course's "
            "repository (instructors: put it in course.json and run `python -m ldm_course.course.editions solutions notebooks`)."
        )
    source = f"git+{COURSE_REPO}@{COURSE_REF}" if COURSE_REF else f"git+{COURSE_REPO}"
    print(f"installing ldm_course from {source} (torch and torchvision stay as installed)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)

import torch

from ldm_course import get_device

device = get_device()  # cuda, then mps, then cpu
# the live runs take their GPU settings on a CUDA GPU (LDM_COURSE_GPU_BRANCH=1 forces them anywhere:
# the tests run those cells on a CPU, shrunk, so that they keep working)
ON_GPU = device.type == "cuda" or os.environ.get("LDM_COURSE_GPU_BRANCH") == "1"
if ON_COLAB and not ON_GPU:
    print("No GPU attached: Runtime > Change runtime type > T4 GPU, then run again (the CPU works, slowly).")
_ = torch.manual_seed(0)  # assigned: a displayed Generator repr holds a memory address"""

BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
GITHUB = re.compile(r"^https://github\.com/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+?)(?:\.git)?/?$")


def colab_url(repository: str, ref: str, path: str) -> str | None:
    """The Colab address of `path` in a GitHub repository at `ref`; None for any other host."""
    m = GITHUB.match(repository)
    if not m:
        return None
    return f"https://colab.research.google.com/github/{m['owner']}/{m['repo']}/blob/{ref}/{path}"


def setup_cell(repository: str = "", ref: str = "") -> str:
    """The setup cell every notebook starts with, with the address and ref filled in."""
    return SETUP_CELL.replace(
        'COURSE_REPO = ""', f"COURSE_REPO = {json.dumps(repository)}", 1
    ).replace('COURSE_REF = ""', f"COURSE_REF = {json.dumps(ref)}", 1)


def is_setup_cell(cell) -> bool:
    return cell.cell_type == "code" and re.search(r"^COURSE_REPO = ", cell.source, re.M) is not None


def stamp(nb: nbformat.NotebookNode, path: str, repository: str = "", ref: str = "") -> bool:
    """Give `nb` (published at `path` in the repository, e.g. 'notebooks/01_vae.ipynb') the
    canonical setup cell and, for a GitHub address, the Colab badge at the top of its first
    markdown cell. True if anything changed."""
    if repository and not ref:
        raise ValueError(
            f"{path}: a repository address needs a ref (the tag the stamped notebooks are committed under) to pin the install to"
        )
    setups = [c for c in nb.cells if is_setup_cell(c)]
    if len(setups) != 1:
        raise ValueError(
            f"{path}: expected one setup cell (a code cell with 'COURSE_REPO = '), found {len(setups)}"
        )
    changed = False
    new = setup_cell(repository, ref)
    if setups[0].source != new:
        setups[0].source, changed = new, True
    title = next(c for c in nb.cells if c.cell_type == "markdown")
    lines = [line for line in title.source.split("\n") if not line.startswith(BADGE)]
    url = colab_url(repository, ref, path) if repository else None
    if url:
        lines = [f"{BADGE}({url})", ""] + (lines[1:] if lines and lines[0] == "" else lines)
    elif lines and lines[0] == "" and title.source.startswith(BADGE):
        lines = lines[1:]
    text = "\n".join(lines)
    if title.source != text:
        title.source, changed = text, True
    return changed


PUBLISH_ORDER = (
    "publish in this order: (1) put the address and a new tag name in course.json, e.g. "
    '{"repository": "https://github.com/you/ldm-course", "ref": "v1.0"}; (2) stamp: '
    "`python -m ldm_course.course.editions solutions notebooks`; (3) commit the stamped notebooks; "
    "(4) tag that commit: `git tag v1.0`; (5) push both: `git push && git push origin v1.0`"
)


def course_address(course_json: Path) -> tuple[str, str]:
    """(repository, ref) from course.json; ('', '') when no repository is set. An address needs an
    explicit "ref", the tag the stamped notebooks will be committed under: the commit checked out
    now cannot hold notebooks stamped with its own name."""
    settings = json.loads(course_json.read_text()) if course_json.exists() else {}
    repository, ref = settings.get("repository", ""), settings.get("ref", "")
    if repository and not ref:
        raise ValueError(
            f'{course_json}: the address {repository!r} needs a "ref": the tag the stamped '
            f"notebooks will be committed under (the commit checked out now does not hold them); "
            + PUBLISH_ORDER
        )
    if ref and not repository:
        raise ValueError(
            f'{course_json}: "ref" {ref!r} is given without a "repository": add the address, or '
            "remove the ref"
        )
    return repository, ref


def check_ref(checkout: Path, repository: str, ref: str, paths: list[str]) -> None:
    """Refuse a ref whose notebooks cannot be the stamped ones, before anything is written.

    `paths` are the solved notebooks, relative to the repository root. Refused: a commit that
    exists already (it was made before the stamp, so its setup cells are not stamped with it) or a
    commit hash; an existing tag whose notebooks do not hold the setup cell stamped with it. Allowed:
    a tag that does not exist yet (made after the stamp commit), or one that holds the stamped cells
    (stamping again); a branch name (it holds the stamp once pushed, but follows the branch: not
    pinned). Outside a git checkout nothing can be checked."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True)

    if git("rev-parse", "--git-dir").returncode != 0:
        return
    if git("rev-parse", "--verify", "-q", f"refs/tags/{ref}").returncode == 0:
        stamped = setup_cell(repository, ref)
        for path in paths:
            shown = git("show", f"refs/tags/{ref}:{path}")
            cells = (
                nbformat.reads(shown.stdout, as_version=4).cells if shown.returncode == 0 else []
            )
            if not any(is_setup_cell(c) and c.source == stamped for c in cells):
                raise ValueError(
                    f"the tag {ref!r} exists and its {path} does not hold the setup cell stamped with "
                    f"{repository!r} and {ref!r}: a badge would open a notebook that cannot install the package. Use a "
                    f"new tag name in course.json (or, if {ref!r} is not pushed yet, `git tag -d {ref}`); "
                    + PUBLISH_ORDER
                )
        return
    is_commit = git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}").returncode == 0
    is_branch = git("rev-parse", "--verify", "-q", f"refs/heads/{ref}").returncode == 0
    # an unknown hash-like ref with a letter in it: a commit from elsewhere, or one not made yet
    looks_like_hash = re.fullmatch(r"[0-9a-f]{7,40}", ref) and re.search(r"[a-f]", ref)
    if (is_commit and not is_branch) or looks_like_hash:
        raise ValueError(
            f"the ref {ref!r} is a commit{'' if is_commit else ' hash'}: a commit made before the "
            "stamp cannot hold the stamped notebooks, and a later commit's hash is not known before "
            "it is made. Put a new tag name in course.json instead; " + PUBLISH_ORDER
        )
