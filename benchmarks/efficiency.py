"""Benchmark 3: GFLOP/s of a U-Net training step as a fraction of a large matmul's.

    python benchmarks/efficiency.py [--threads 1] [--repeats 5] [--tiny] [--out DIR]

Extra options are those of `ldm-course bench --help` (this script runs `--only efficiency`).
"""

import sys

from ldm_course.bench import main

if __name__ == "__main__":
    raise SystemExit(main(["--only", "efficiency", *sys.argv[1:]]))
