"""The release files agree with the package: LICENSE, CITATION.cff, CHANGELOG.md, the Python
version the tests need, and an sdist that leaves out the tests it could not run."""

import datetime
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

import ldm_course

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CFF_REQUIRED = ("authors", "cff-version", "message", "title")  # the CFF 1.2.0 schema's 'required'


def test_license_is_the_mit_license_pyproject_names():
    assert PROJECT["project"]["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_citation_is_cff_1_2_0_for_this_version():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert all(key in cff for key in CFF_REQUIRED)
    assert all("name" in a or "family-names" in a for a in cff["authors"])  # entity or person
    version = PROJECT["project"]["version"]
    assert cff["version"] == version == ldm_course.__version__
    assert cff["license"] == PROJECT["project"]["license"]["text"]
    datetime.date.fromisoformat(cff["date-released"])  # YYYY-MM-DD, as the schema's format


def test_changelog_names_the_current_version():
    headings = re.findall(r"^## (\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert ldm_course.__version__ in headings
    assert headings == sorted(headings, key=lambda v: tuple(map(int, v.split("."))), reverse=True)


def test_requires_python_covers_what_the_tests_use():
    """tomllib is 3.11's: a floor of 3.10 promised tests that cannot import there."""
    requires = SpecifierSet(PROJECT["project"]["requires-python"])
    uses_tomllib = any("import tomllib" in p.read_text() for p in (ROOT / "tests").glob("*.py"))
    assert not (uses_tomllib and requires.contains("3.10")), requires
    assert requires.contains(f"{sys.version_info.major}.{sys.version_info.minor}")
    floor = re.fullmatch(r">=(\d+)\.(\d+)", str(requires))
    assert floor, f"requires-python {requires} should be a plain floor"
    assert PROJECT["tool"]["ruff"]["target-version"] == f"py{floor[1]}{floor[2]}"


@pytest.mark.slow
def test_sdist_leaves_the_tests_out_and_ships_the_release_files(tmp_path):
    """Built by setuptools' own backend (what `python -m build --sdist --no-isolation` calls) from
    a copy of this checkout's files, committed or not."""
    src = tmp_path / "src"
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    build = "import setuptools.build_meta as b, sys; print(b.build_sdist(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path / "dist")],
        cwd=src, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sdist = tmp_path / "dist" / done.stdout.strip().split("\n")[-1]
    version = PROJECT["project"]["version"]
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    assert not [n for n in names if n.startswith("tests/")], "tests without conftest and helpers"
    for shipped in ("LICENSE", "CITATION.cff", "CHANGELOG.md", "README.md", "pyproject.toml"):
        assert shipped in names, shipped
    assert "ldm_course/__init__.py" in names and any(
        n.startswith("ldm_course/assets/") for n in names
    )
    assert sdist.name == f"ldm_course-{version}.tar.gz"
