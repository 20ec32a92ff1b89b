"""Recognisability of the shipped category U-Net: one sample per test image (the test split's labels),
DDIM 50, guidance 1 and 3, seed 0, judged by the shipped category judge (about 3 min on one thread).

    OMP_NUM_THREADS=1 python scripts/experiments/recognisability_shipped.py benchmarks/results/recognisability_shipped.json
"""

import json
import sys
import time

import torch

from ldm_course.data import twemoji
from ldm_course.judge import load_judge, score_generator
from ldm_course.pretrained import load_ldm

torch.set_num_threads(1)
ldm = load_ldm()
judge, ceiling, names = load_judge("category")
test = twemoji("test", labels="category")
out = {}
for w in (1.0, 3.0):
    t0 = time.perf_counter()
    r = score_generator(ldm, judge, ceiling, names, test.labels, guidance_scale=w, steps=50, seed=0)
    out[w] = r.as_dict()
    print(f"w={w:g}: score {r.score:.3f} (chance {r.chance:.3f}), {time.perf_counter() - t0:.0f} s")
    for c in r.classes:
        print(
            f"   {names[c]:20s} hit {r.hit[c]:.3f} ceiling {r.ceiling[c]:.3f} ratio {r.hit[c] / r.ceiling[c]:.2f}"
        )
json.dump(
    out, open(sys.argv[1], "w"), indent=1
)  # e.g. benchmarks/results/recognisability_shipped.json
