"""Publishing for Colab: the one setup cell, the badge, the pinned install, tested up to the
network call; and no notebook reads a file outside itself."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ldm_course.course.editions import main as editions_main
from ldm_course.course.publish import (
    BADGE,
    PUBLISH_ORDER,
    colab_url,
    course_address,
    setup_cell,
    stamp,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("0*.ipynb")) + sorted(
    (ROOT / "notebooks").glob("0*.ipynb")
)
REPO = "https://github.com/you/ldm-course"


def test_every_notebook_starts_with_the_one_setup_cell():
    """The setup cell stamped with this checkout's course.json (unstamped while it has no address),
    so that `pytest` passes on a stamped checkout too."""
    expected = setup_cell(*course_address(ROOT / "course.json"))
    for path in NOTEBOOKS:
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert code[0].source == expected, path.name


def test_no_notebook_reads_a_path_outside_itself():
    """On Colab only the notebook is opened: ../images or ../ldm_course links would break."""
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            assert "../" not in cell.source, f"{path.name}: {cell.source[:200]!r}"


def test_colab_url_only_for_github():
    assert (
        colab_url(REPO + ".git", "v1.0", "notebooks/01_vae.ipynb")
        == "https://colab.research.google.com/github/you/ldm-course/blob/v1.0/notebooks/01_vae.ipynb"
    )
    assert colab_url("https://gitlab.com/you/ldm-course", "v1.0", "notebooks/01_vae.ipynb") is None


def editions_on(root: Path) -> int:
    return editions_main(
        [str(root / "solutions"), str(root / "notebooks"), "--course", str(root / "course.json")]
    )


def stamped_copy(tmp_path: Path, course: dict) -> Path:
    """The editions command on a copy of the solved edition with this course.json."""
    (tmp_path / "solutions").mkdir()
    for path in (ROOT / "solutions").glob("0*.ipynb"):
        (tmp_path / "solutions" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "course.json").write_text(json.dumps(course))
    assert editions_on(tmp_path) == 0
    return tmp_path


def test_stamped_copy_has_badge_and_pinned_install(tmp_path):
    out = stamped_copy(tmp_path, {"repository": REPO, "ref": "v1.0"})
    for edition in ("solutions", "notebooks"):
        nb = nbformat.read(out / edition / "01_vae.ipynb", as_version=4)
        title = next(c for c in nb.cells if c.cell_type == "markdown").source
        assert title.startswith(
            f"{BADGE}(https://colab.research.google.com/github/you/ldm-course/blob/v1.0/{edition}/01_vae.ipynb)\n\n# 01"
        )
        setup = next(c for c in nb.cells if c.cell_type == "code").source
        assert f'COURSE_REPO = "{REPO}"' in setup and 'COURSE_REF = "v1.0"' in setup
    nb = nbformat.read(out / "solutions" / "01_vae.ipynb", as_version=4)
    assert not stamp(nb, "solutions/01_vae.ipynb", REPO, "v1.0")  # stamping twice changes nothing


def test_no_address_invents_nothing(tmp_path):
    out = stamped_copy(tmp_path, {"repository": ""})
    for path in (out / "notebooks").glob("0*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert BADGE not in nb.cells[0].source
        assert [c for c in nb.cells if c.cell_type == "code"][0].source == setup_cell()


def test_a_gitlab_address_pins_the_install_without_a_badge(tmp_path):
    nb = nbformat.read(ROOT / "solutions" / "03_latent_scaling.ipynb", as_version=4)
    assert stamp(
        nb, "solutions/03_latent_scaling.ipynb", "https://gitlab.com/you/ldm-course", "abc123"
    )
    assert BADGE not in nb.cells[0].source
    assert 'COURSE_REF = "abc123"' in [c for c in nb.cells if c.cell_type == "code"][0].source
    assert stamp(nb, "solutions/03_latent_scaling.ipynb")  # the address removed again
    assert 'COURSE_REPO = ""' in [c for c in nb.cells if c.cell_type == "code"][0].source


def git(root: Path, *args: str) -> str:
    run = subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=a@b", "-c", "user.name=a", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.strip()


def committed_copy(tmp_path: Path, course: dict) -> Path:
    """A git checkout holding an unstamped copy of the solved edition and this course.json."""
    root = tmp_path / "course"
    (root / "solutions").mkdir(parents=True)
    for path in (ROOT / "solutions").glob("0*.ipynb"):
        (root / "solutions" / path.name).write_bytes(path.read_bytes())
    (root / "course.json").write_text(json.dumps(course))
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "unstamped")
    return root


def unchanged(root: Path) -> bool:
    return git(root, "status", "--porcelain") == "" and not (root / "notebooks").exists()


def test_an_address_without_ref_is_refused_with_the_order(tmp_path):
    """The old default (the commit checked out) published a badge onto unstamped notebooks."""
    (tmp_path / "course.json").write_text(json.dumps({"repository": REPO}))
    with pytest.raises(ValueError, match='needs a "ref"') as err:
        course_address(tmp_path / "course.json")
    assert PUBLISH_ORDER in str(err.value)
    with pytest.raises(ValueError, match="needs a ref"):
        stamp(nbformat.read(NOTEBOOKS[0], as_version=4), "x.ipynb", REPO, "")


def test_the_checked_out_commit_as_ref_is_refused_before_writing(tmp_path, capsys):
    root = committed_copy(tmp_path, {"repository": ""})
    head = git(root, "rev-parse", "HEAD")
    for ref in (head, head[:10], "0123abcd"):  # the commit itself, short, and an unknown hash
        (root / "course.json").write_text(json.dumps({"repository": REPO, "ref": ref}))
        git(root, "commit", "-q", "-am", "address")
        assert editions_on(root) == 2
        message = capsys.readouterr().err
        assert f"the ref {ref!r} is a commit" in message and PUBLISH_ORDER in message
        assert ("is a commit hash:" in message) == (ref == "0123abcd")  # unknown: its form tells
        assert message.count("\n") == 1  # one line
        assert unchanged(root)


def test_a_new_tag_named_by_digits_is_not_taken_for_a_commit(tmp_path):
    root = committed_copy(tmp_path, {"repository": REPO, "ref": "20261207"})
    assert editions_on(root) == 0


def test_a_tag_made_before_the_stamp_is_refused_and_one_after_is_accepted(tmp_path, capsys):
    root = committed_copy(tmp_path, {"repository": REPO, "ref": "v1.0"})
    git(root, "tag", "v1.0")  # wrong order: tag, then stamp
    assert editions_on(root) == 2
    message = capsys.readouterr().err
    assert "the tag 'v1.0' exists" in message and "git tag -d v1.0" in message
    assert unchanged(root)
    git(root, "tag", "-d", "v1.0")  # the order: stamp, commit, tag
    assert editions_on(root) == 0
    assert "stamped the setup cell and Colab badge into" in capsys.readouterr().out
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "stamped")
    git(root, "tag", "v1.0")
    assert editions_on(root) == 0  # stamping again at that tag: accepted, nothing to change
    assert "stamped" not in capsys.readouterr().out
    assert unchanged(root) is False and git(root, "status", "--porcelain") == ""


def test_the_message_says_badge_only_when_one_was_added(tmp_path, capsys):
    stamped_copy(tmp_path, {"repository": "https://gitlab.com/you/ldm-course", "ref": "v1.0"})
    out = capsys.readouterr().out
    assert "stamped the setup cell into" in out and "Colab badge" not in out


def run_setup_cell(source: str) -> subprocess.CompletedProcess:
    """Run a setup cell in a fresh Python where ldm_course is not importable and Colab is
    pretended; pip is replaced by a stub that prints its command (the network call)."""
    harness = f"""
import importlib.util, subprocess, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "ldm_course" else _find(name, *a)
def fake_run(cmd, check):
    print("PIP", cmd[1:])
    raise SystemExit(0)  # stop where the real install would start
subprocess.run = fake_run
exec({source!r})
"""
    return subprocess.run(
        [sys.executable, "-c", harness], capture_output=True, text=True, timeout=120
    )


def test_setup_cell_on_colab_installs_the_pinned_package_only():
    run = run_setup_cell(setup_cell(REPO, "v1.0"))
    assert run.returncode == 0, run.stderr
    assert (
        f"installing ldm_course from git+{REPO}@v1.0 (torch and torchvision stay as installed)"
        in run.stdout
    )
    assert f"PIP ['-m', 'pip', 'install', '-q', 'git+{REPO}@v1.0']" in run.stdout


def test_setup_cell_without_address_says_what_to_do():
    run = run_setup_cell(setup_cell())
    assert run.returncode == 1
    message = re.sub(r"\s+", " ", run.stderr)
    assert "run `pip install -e .` in the course folder" in message
    assert "python -m ldm_course.course.editions solutions notebooks" in message
