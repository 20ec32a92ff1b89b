#!/usr/bin/env bash
# Horizontal-flip augmentation (--set flip=true), tried on the stage-1 recipe of both label spaces,
# and the comparisons with the same recipe without flips (docs/experiments/mirror-images.md):
#   10 categories,    flips -> runs/ldm-flip      (against runs/ldm of train_shipped.sh)
#   99 subcategories, flips -> runs/ldm-sub-flip  (against runs/ldm-sub of train_shipped.sh)
# Each is 7000 steps on one CPU thread (about 75 minutes with the other run on the second core).
# Rerunning resumes or skips finished runs.  Needs runs/vae-lpips, runs/ldm and runs/ldm-sub.
set -euo pipefail
CLI=${CLI:-.venv/bin/ldm-course}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$(dirname "$0")/../lib/train_or_resume.sh"  # train RUN_DIR COMMAND...: resume or skip when done
FLIP=($CLI train-ldm --preset cpu-full --vae runs/vae-lpips --set flip=true)
train runs/ldm-flip "${FLIP[@]}" &
train runs/ldm-sub-flip "${FLIP[@]}" --set labels=subcategory &
wait
# one sample per test image (its label in each model's own label space, the same noise for every
# model), DDIM 50, guidance 3 and 1, four seeds; the two pairs side by side
compare() {  # out-name, unets...
  local name=$1; shift
  $PY scripts/experiments/compare_unets.py "$@" --guidance 3 1 --seeds 0 1 2 3 \
    --out "benchmarks/results/$name.json" --grids "runs/grids-$name"
}
compare compare_flip_category runs/ldm/model.safetensors runs/ldm-flip/model.safetensors &
compare compare_flip_subcategory runs/ldm-sub/model.safetensors runs/ldm-sub-flip/model.safetensors &
wait
