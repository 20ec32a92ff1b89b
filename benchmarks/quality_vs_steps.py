"""Benchmark 4: sample quality against DDIM / DDPM steps (needs the shipped model).

    python benchmarks/quality_vs_steps.py [--threads 1] [--repeats 5] [--tiny] [--out DIR]

Extra options are those of `ldm-course bench --help` (this script runs `--only quality`).
"""

import sys

from ldm_course.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "quality", *sys.argv[1:]]))
