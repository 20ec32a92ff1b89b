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
from ldm_course.course.publish import BADGE, colab_url, course_address, setup_cell, stamp

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("0*.ipynb")) + sorted(
    (ROOT / "notebooks").glob("0*.ipynb")
)
REPO = "https://github.com/you/ldm-course"


def test_every_notebook_starts_with_the_one_setup_cell():
    for path in NOTEBOOKS:
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert code[0].source == setup_cell(), path.name


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


def stamped_copy(tmp_path: Path, course: dict) -> Path:
    """The editions command on a copy of the solved edition with this course.json."""
    (tmp_path / "solutions").mkdir()
    for path in (ROOT / "solutions").glob("0*.ipynb"):
        (tmp_path / "solutions" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "course.json").write_text(json.dumps(course))
    editions_main(
        [
            str(tmp_path / "solutions"),
            str(tmp_path / "notebooks"),
            "--course",
            str(tmp_path / "course.json"),
        ]
    )
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


def test_address_without_ref_defaults_to_this_commit(tmp_path):
    (tmp_path / "course.json").write_text(json.dumps({"repository": REPO}))
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert course_address(tmp_path / "course.json") == (REPO, head)
    subprocess.run(["git", "-C", str(tmp_path), "tag", "v2.0"], check=True)
    assert course_address(tmp_path / "course.json") == (REPO, "v2.0")
    with pytest.raises(ValueError, match="needs a ref"):
        stamp(nbformat.read(NOTEBOOKS[0], as_version=4), "x.ipynb", REPO, "")


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
