"""Rebuild the built-in Twemoji dataset file from the npm package.

    npm pack emoji-datasource-twitter@16.0.0          # -> emoji-datasource-twitter-16.0.0.tgz
    python scripts/course/build_twemoji.py emoji-datasource-twitter-16.0.0.tgz

Writes ldm_course/assets/twemoji64.npz and checks the content hash recorded in
ldm_course/data.py (TWEMOJI_SHA256). The hash covers the decoded arrays, not the zip container,
whose timestamps differ between builds. Images are Twemoji by Twitter, Inc. and contributors,
CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
"""

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from ldm_course.data import TWEMOJI_CATEGORIES, TWEMOJI_SHA256, twemoji_content_hash
from ldm_course.infra.checkpoint import atomic_write

IMAGE_DIR = "package/img/twitter/64/"


def composite_on_white(png: bytes) -> np.ndarray:
    """RGBA PNG bytes -> (64, 64, 3) uint8, alpha composited over a white background."""
    rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


def entries(emoji: list[dict]) -> list[tuple[str, str, str, str, str]]:
    """(image file, name, category, base unified code, subcategory) per emoji with a Twitter image."""
    rows = []
    for e in sorted(emoji, key=lambda e: e["sort_order"]):
        name = e["name"] or e["short_name"].replace("_", " ")
        if e["has_img_twitter"]:
            rows.append((e["image"], name, e["category"], e["unified"], e["subcategory"]))
        for tone, v in sorted(e.get("skin_variations", {}).items()):
            if v["has_img_twitter"]:
                rows.append(
                    (v["image"], f"{name} ({tone})", e["category"], e["unified"], e["subcategory"])
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tgz", type=Path, help="emoji-datasource-twitter-16.0.0.tgz from npm pack")
    parser.add_argument("--out", type=Path, default=Path("ldm_course/assets/twemoji64.npz"))
    args = parser.parse_args()

    with tarfile.open(args.tgz) as tar:
        emoji = json.load(tar.extractfile("package/emoji.json"))
        rows = entries(emoji)
        images = np.stack(
            [composite_on_white(tar.extractfile(IMAGE_DIR + r[0]).read()) for r in rows]
        )
    arrays = {
        "images": images,  # (N, 64, 64, 3) uint8
        "names": np.array([r[1] for r in rows]),
        "categories": np.array([TWEMOJI_CATEGORIES.index(r[2]) for r in rows], dtype=np.int64),
        "base": np.array([r[3] for r in rows]),
        "subcategories": np.array([r[4] for r in rows]),  # e.g. "food-fruit", 99 of them
    }
    digest = twemoji_content_hash(arrays)

    def write(path: Path) -> None:
        with path.open("wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez_compressed(f, **arrays)

    atomic_write(args.out, write)
    print(
        f"{len(rows)} images -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), sha256 {digest}"
    )
    if digest != TWEMOJI_SHA256:
        sys.exit(f"content hash {digest} differs from the recorded TWEMOJI_SHA256 {TWEMOJI_SHA256}")


if __name__ == "__main__":
    main()
