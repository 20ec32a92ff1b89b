"""Checks of the command line's values, done where they are parsed or before any work starts:
counts and seeds in range, a device that exists, an output path that can be written, a sample
count that fits in memory. Each failure is one line naming the value, the problem and the fix."""

import argparse
import math
import os
from pathlib import Path

import torch

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64 bits


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block above them; --help has it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def count(text: str) -> int:
    """argparse type: an integer >= 1 (--n, --nrow, --steps)."""
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be a whole number >= 1")
    return value


def sample_count(text: str) -> int:
    """argparse type: an integer >= 2 (evaluate's --num-samples: a covariance needs 2 images)."""
    value = _number(text, int, "a whole number")
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"{text} is out of range: a Frechet distance needs at least 2 images; use 2 or more"
        )
    return value


def seed(text: str) -> int:
    value = _number(text, int, "a whole number")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text} is out of range: a seed is in [0, 2**63 - 1]")
    return value


def non_negative(text: str) -> float:
    """argparse type: a finite float >= 0 (--eta, --guidance)."""
    value = _number(text, float, "a number")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be a finite number >= 0")
    return value


def _number(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def resolve_device(name: str) -> torch.device:
    """--device: 'auto' picks the best available; a named device must exist on this machine."""
    from ldm_course.infra.device import check_device, get_device

    if name == "auto":
        return get_device()
    return check_device(name, what=f"--device {name}")


def check_output(path: str, *, suffixes: tuple[str, ...], what: str = "--out") -> None:
    """The output must name a file of a known kind in a folder this process can write."""
    from ldm_course.infra.run_folder import check_writable

    p = Path(path)
    if path.endswith(("/", os.sep)) or p.is_dir():
        raise ValueError(
            f"{what} {path} is a folder; give a file name, e.g. {p / ('out' + suffixes[0])}"
        )
    if p.suffix.lower() not in suffixes:
        raise ValueError(
            f"{what} {path}: unknown file type {p.suffix or '(none)'!r}; end the name with one of "
            f"{', '.join(suffixes)}"
        )
    check_writable(p.parent, f"{what} {path}")


def check_run_dir(path: str) -> None:
    """--run-dir: a folder (created if missing) this process can write, checked before the data
    loads; what it may already hold is checked by run_folder.prepare_run_dir."""
    from ldm_course.infra.run_folder import check_writable

    if Path(path).exists() and not Path(path).is_dir():
        raise FileExistsError(
            f"--run-dir {path} is a file, not a folder; give a folder path (created if missing)"
        )
    check_writable(path, f"--run-dir {path}")


IMAGE_OUT = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
FIGURE_OUT = (".png", ".pdf", ".svg", ".jpg", ".jpeg")  # matplotlib figures (bench --plot)


def available_memory() -> int:
    """Bytes this machine can still allocate (MemAvailable on Linux; total memory elsewhere)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_batch_fits(n: int, vae_cfg, image_size: int, *, what: str = "--n") -> None:
    """Refuse a batch whose decoding cannot fit in memory. Decoding holds a few full-resolution
    activations of the decoder's first width per image: about 1.5 MB per 64x64 image for the
    shipped VAE, measured as max RSS of `sample --n 256` minus `--n 16`; 8 of them here, for margin.
    """
    width = vae_cfg.base_channels * vae_cfg.channel_mult[0]
    need = n * 8 * 4 * width * image_size * image_size
    free = available_memory()
    if need > free:
        fits = max(1, free // (need // n))
        raise ValueError(
            f"{what} {n} needs about {need / 1e9:.1f} GB to decode, this machine has "
            f"{free / 1e9:.1f} GB available; use {what} {fits} or less"
        )
