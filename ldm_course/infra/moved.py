"""Old import paths of modules that moved into subpackages, kept working for one release.

Version 0.2 grouped the plumbing (``infra/``), the course machinery (``course/``), the training
loops (``training/``) and the command line (``cli/``) into subpackages. ``import
ldm_course.checkpoint`` and ``from ldm_course.train_ldm import train_ldm`` still work: this finder
answers the old name with the module at its new place (one module object under both names) and
warns once with ``DeprecationWarning``. It is removed in the release after 0.2.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old name under ldm_course -> new dotted path under ldm_course
MOVED: dict[str, str] = {
    "checkpoint": "infra.checkpoint",
    "run_folder": "infra.run_folder",
    "limits": "infra.limits",
    "precision": "infra.precision",
    "device": "infra.device",
    "distributed": "infra.distributed",
    "image_files": "infra.image_files",
    "replay": "course.replay",
    "editions": "course.editions",
    "publish": "course.publish",
    "live": "course.live",
    "viz": "course.viz",
    "checks": "course.checks",
    "train": "training.train",
    "train_vae": "training.train_vae",
    "train_ldm": "training.train_ldm",
    "evaluate": "training.evaluate",
    "cli_args": "cli.args",
    "cli_models": "cli.models",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass  # the target module is already executed


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``ldm_course.<old>`` (and its submodules) as ``ldm_course.<new>``."""

    def find_spec(self, fullname: str, path=None, target=None):
        parts = fullname.split(".")
        if len(parts) < 2 or parts[0] != "ldm_course" or parts[1] not in MOVED:
            return None
        new = ".".join(["ldm_course", MOVED[parts[1]], *parts[2:]])
        if len(parts) == 2:
            warnings.warn(
                f"{fullname} moved to {new}; import it from there "
                "(the old path is removed in the next release)",
                DeprecationWarning,
                stacklevel=3,
            )
        is_package = importlib.util.find_spec(new).submodule_search_locations is not None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new), is_package=is_package)


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (called by ``ldm_course/__init__.py``)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        # first, so that a submodule of a moved package is never loaded a second time by path
        sys.meta_path.insert(0, MovedModuleFinder())
