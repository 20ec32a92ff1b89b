"""The pre-0.2 flat import paths (ldm_course/infra/moved.py) answer with the moved module itself."""

import importlib
import importlib.resources
import subprocess
import sys

import pytest

from ldm_course.infra.moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module(old):
    sys.modules.pop(f"ldm_course.{old}", None)  # imported afresh, as old user code would
    with pytest.warns(
        DeprecationWarning, match=f"ldm_course.{old} moved to ldm_course.{MOVED[old]}"
    ):
        module = importlib.import_module(f"ldm_course.{old}")
    assert module is importlib.import_module(f"ldm_course.{MOVED[old]}")


def test_submodule_of_a_moved_package_is_loaded_once():
    # a fresh interpreter, so the old name is imported first, as old user code would
    code = (
        "import warnings; warnings.simplefilter('ignore');"
        "from ldm_course.checks.core import check_function as a;"
        "from ldm_course.course.checks.core import check_function as b;"
        "import sys; assert a is b;"
        "assert sys.modules['ldm_course.checks.core'] is sys.modules['ldm_course.course.checks.core']"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow  # over 7 s: in CI's full run, not the fast subset
def test_new_paths_import_without_warnings():
    code = (
        "import warnings; warnings.simplefilter('error');"
        + "".join(f"import ldm_course.{new};" for new in MOVED.values())
        + "import ldm_course.cli.main, ldm_course.pretrained"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_top_level_shows_the_course():
    import ldm_course

    names = {
        p.name
        for p in importlib.resources.files(ldm_course).iterdir()
        if p.name != "__pycache__" and not p.name.startswith(".")
    }
    modules = {n for n in names if n.endswith(".py") and not n.startswith("__")}
    assert modules == {
        "config.py", "data.py", "blocks.py", "vae.py", "perceptual.py", "discriminator.py",
        "latents.py", "schedules.py", "samplers.py", "unet.py", "diffusion.py", "metrics.py",
        "pretrained.py", "sd_vae.py", "judge.py",
    }  # fmt: skip
    assert names - modules == {
        "__init__.py",
        "__main__.py",
        "assets",
        "bench",
        "cli",
        "course",
        "infra",
        "training",
    }
