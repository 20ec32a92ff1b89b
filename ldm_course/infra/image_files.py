"""Reading a user's folder of images: every file found is either loaded correctly or reported.

`list_images` walks the folder (following folder links once), skips and lists hidden entries that
tools leave behind (.ipynb_checkpoints, .DS_Store, __MACOSX), and makes an unreadable folder or a
broken or looping link an error rather than a silent gap. `rgb_array` turns any PIL mode into 8-bit
RGB the way the built-in dataset is made: 16-bit images scaled down (not clipped), transparency
composited on white, the camera's EXIF orientation applied.
"""

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SKIPPED_NAMES = ("__MACOSX",)  # macOS zip archives' resource forks
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def list_images(root: Path) -> tuple[list[Path], list[str]]:
    """(files, skipped): every file under `root` in sorted order, and the hidden entries left out
    (as paths relative to root; a folder ends with '/')."""
    root = Path(root)
    files: list[Path] = []
    skipped: list[str] = []
    seen: set[Path] = set()

    def walk(folder: Path) -> None:
        real = folder.resolve()
        if real in seen:
            raise ValueError(f"{folder} links back to a folder already read; remove the link")
        seen.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            raise ValueError(
                f"cannot read the folder {folder} ({err.strerror}); fix its permissions or move "
                f"it out of {root}"
            ) from None
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(".") or entry.name in SKIPPED_NAMES:
                skipped.append(path.relative_to(root).as_posix() + ("/" if path.is_dir() else ""))
            elif path.is_dir():
                walk(path)
            elif path.is_file():
                files.append(path)
            else:
                raise ValueError(
                    f"{path} is a broken or looping link, or not a regular file; remove it or "
                    "point it at an image"
                )

    walk(root)
    return files, skipped


def open_image(path: Path) -> Image.Image:
    """Image.open + load, with a too-large image (PIL's decompression-bomb guard, about 89
    megapixels) refused by name instead of a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ValueError(
                f"{path} is too large to load safely ({err}); it may be a decompression bomb: "
                "shrink it or remove it from the folder"
            ) from None
    return img


def rgb_array(img: Image.Image, path: Path) -> np.ndarray:
    """Any PIL image -> (H, W, 3) uint8 RGB, transparency on white, EXIF orientation applied."""
    img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.int64)  # (H, W)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(
                f"{path} is a 32-bit integer image with values outside 0..65535; save it as an "
                "8- or 16-bit PNG"
            )
        img = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))  # 65535 -> 255
    elif img.mode == "F":
        raise ValueError(
            f"{path} is a 32-bit float image, whose value range is unknown; save it as an 8- or "
            "16-bit PNG"
        )
    if has_alpha(img):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(img.convert("RGB")).copy()


def has_alpha(img: Image.Image) -> bool:
    bands = img.getbands()
    return img.mode == "P" or "A" in bands or "a" in bands or "transparency" in img.info


def folder_summary(data, root) -> str:
    """One line: what was loaded from a folder, per class, and what was left out and why."""
    from collections import Counter

    counts = Counter(data.labels.tolist())
    classes = ", ".join(f"{name} ({counts[i]})" for i, name in enumerate(data.class_names))
    skipped = f"; skipped hidden entries: {', '.join(data.skipped)}" if data.skipped else ""
    return f"{root}: {len(data)} images in {len(data.class_names)} classes: {classes}{skipped}"
