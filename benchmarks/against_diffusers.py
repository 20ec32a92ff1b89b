"""Benchmark 2: our VAE and U-Net against diffusers' AutoencoderKL and UNet2DModel.

    python benchmarks/against_diffusers.py [--threads 1] [--repeats 5] [--tiny] [--out DIR]

Extra options are those of `ldm-course bench --help` (this script runs `--only diffusers`).
"""

import sys

from ldm_course.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "diffusers", *sys.argv[1:]]))
