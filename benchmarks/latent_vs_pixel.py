"""Benchmark 1: the same U-Net family on 4x8x8 latents and on 3x64x64 pixels.

    python benchmarks/latent_vs_pixel.py [--threads 1] [--repeats 5] [--tiny] [--out DIR]

Extra options are those of `ldm-course bench --help` (this script runs `--only latent-vs-pixel`).
"""

import sys

from ldm_course.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "latent-vs-pixel", *sys.argv[1:]]))
