"""The whole publishing path, offline, on a local bare repository standing in for GitHub.

An instructor clones the course, puts the address and a new tag in course.json, stamps, commits,
tags and pushes (the order publish.PUBLISH_ORDER gives); a learner's notebook, taken from the
remote at that tag (what the Colab badge opens), then runs its setup cell, which pip-installs the
package from `git+file://...@v1.0` into a throwaway virtual environment. `pytest` runs on the
stamped clone. No network: pip builds from the bare repository with --no-deps --no-build-isolation.
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from ldm_course.course.publish import colab_url, setup_cell

ROOT = Path(__file__).resolve().parents[1]
# what the package, its build and the publishing tests need from this checkout
SHIPPED = ("ldm_course/", "solutions/", "notebooks/", "tests/", "pyproject.toml", "README.md",
           "conftest.py", "course.json", "LICENSE", "MANIFEST.in")  # fmt: skip

pytestmark = pytest.mark.slow


def run(*cmd: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def git(cwd: Path, *args: str) -> str:
    return run("git", "-c", "user.email=a@b", "-c", "user.name=a", *args, cwd=cwd).strip()


def course_snapshot(dest: Path) -> None:
    """This checkout's files (as they are now, committed or not) in a fresh one-commit repository."""
    listed = git(ROOT, "ls-files", "-co", "--exclude-standard").split("\n")
    for name in listed:
        if name.startswith(SHIPPED) and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes((ROOT / name).read_bytes())
    (dest / "course.json").write_text(json.dumps({"repository": ""}))
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", ".")
    git(dest, "commit", "-q", "-m", "the course, unstamped")


def throwaway_venv(path: Path) -> Path:
    """A venv without this environment's packages; pip and setuptools for the offline build are
    reached through a path entry (a .pth line adds the folder, not the editable ldm_course in it)."""
    run(sys.executable, "-m", "venv", "--without-pip", str(path), cwd=path.parent)
    python = path / "bin" / "python"
    site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
               cwd=path).strip()  # fmt: skip
    Path(site, "build_tools.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_stamped_clone_installs_from_a_local_bare_remote(tmp_path):
    source, remote, clone = tmp_path / "source", tmp_path / "remote.git", tmp_path / "clone"
    source.mkdir()
    course_snapshot(source)
    git(tmp_path, "clone", "-q", "--bare", str(source), str(remote))
    git(tmp_path, "clone", "-q", str(remote), str(clone))

    # the instructor: address and tag, stamp, commit, tag, push
    address = remote.as_uri()  # file:///.../remote.git
    (clone / "course.json").write_text(json.dumps({"repository": address, "ref": "v1.0"}))
    env = {**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1"}
    python = sys.executable
    out = run(python, "-m", "ldm_course.course.editions", "solutions", "notebooks", cwd=clone,
              env=env)  # fmt: skip
    assert "stamped the setup cell into" in out and "badge" not in out  # no badge off GitHub
    # `pytest` on the stamped checkout: the tests that compare setup cells and editions
    run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_publish.py",
        "tests/test_notebooks.py::test_learner_edition_is_the_stripped_solved_edition", cwd=clone,
        env=env)  # fmt: skip
    git(clone, "add", ".")
    git(clone, "commit", "-q", "-m", "stamp the notebooks for v1.0")
    git(clone, "tag", "v1.0")
    git(clone, "push", "-q", "origin", "main", "v1.0")

    # what the badge opens: the notebook at the tag on the remote
    path = "notebooks/01_vae.ipynb"
    nb = nbformat.reads(git(tmp_path, "--git-dir", str(remote), "show", f"v1.0:{path}"), 4)
    cell = next(c for c in nb.cells if c.cell_type == "code").source
    assert cell == setup_cell(address, "v1.0")
    github = colab_url("https://github.com/you/ldm-course", "v1.0", path)
    assert github.endswith(f"/blob/v1.0/{path}")  # on GitHub the badge names the same tag and path

    # the learner: the setup cell, on a pretended Colab without ldm_course, installs from the tag
    venv_python = throwaway_venv(tmp_path / "venv")
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no checkout on the path
    harness = f"""
import importlib.util, subprocess, sys, types
sys.modules["google.colab"] = types.ModuleType("google.colab")
_find, _run = importlib.util.find_spec, subprocess.run
importlib.util.find_spec = lambda name, *a: None if name == "ldm_course" else _find(name, *a)
def offline_install(cmd, check):
    assert cmd[1:4] == ["-m", "pip", "install"], cmd
    _run(cmd + ["--no-deps", "--no-build-isolation", "--no-index"], check=check)
    raise SystemExit(0)  # installed: the rest of the cell needs torch, not under test here
subprocess.run = offline_install
exec({cell!r})
"""
    installed = subprocess.run([str(venv_python), "-c", harness], capture_output=True, text=True,
                               cwd=tmp_path, env=bare, timeout=300)  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert f"installing ldm_course from git+{address}@v1.0" in installed.stdout
    check = """
import importlib.metadata as md, importlib.util, json
dist = md.distribution("ldm-course")
print(json.dumps({"origin": importlib.util.find_spec("ldm_course").origin, "version": dist.version,
                  "url": json.loads(dist.read_text("direct_url.json"))}))
"""
    info = json.loads(run(str(venv_python), "-c", check, cwd=tmp_path, env=bare))
    assert Path(info["origin"]).is_relative_to(tmp_path / "venv")  # not this checkout's package
    assert info["url"]["url"] == address
    assert info["url"]["vcs_info"]["requested_revision"] == "v1.0"
    assert info["url"]["vcs_info"]["commit_id"] == git(clone, "rev-parse", "v1.0")
    publish_py = Path(info["origin"]).parent / "course" / "publish.py"
    assert publish_py.read_text() == git(clone, "show", "v1.0:ldm_course/course/publish.py") + "\n"
