#!/usr/bin/env bash
# Two third U-Net stages tried on top of the shipped second stage (runs/ldm-2 of train_shipped.sh),
# and the comparison that decided against shipping either (docs/experiments/more-training.md):
#   a. Min-SNR-5 loss weights                              -> runs/ldm-3
#   b. the same, drawing every base emoji equally often   -> runs/ldm-3g
# Each is 6000 steps on one CPU thread (about 68 minutes with the other run on the second core).
# Rerunning resumes or skips finished runs.  Needs runs/vae-lpips and runs/ldm-2 (and runs/ldm for
# the stage-1 row) from scripts/release/train_shipped.sh.
set -euo pipefail
CLI=${CLI:-.venv/bin/ldm-course}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$(dirname "$0")/../lib/train_or_resume.sh"  # train RUN_DIR COMMAND...: resume or skip when done
stage3() {  # run-dir, extra --set pairs
  local dir=$1; shift
  train "$dir" $CLI train-ldm --preset cpu-full --vae runs/vae-lpips --set init_from=runs/ldm-2 \
    --set min_snr_gamma=5 --set seed=2 --set steps=6000 --set lr=3e-4 --set warmup_steps=100 "$@"
}
stage3 runs/ldm-3 &
stage3 runs/ldm-3g --set sample_by=group &
wait
# one sample per test image (its category, the same noise for every model), DDIM 50, guidance 1,
# four seeds (about 50 s per model and seed on one thread)
$PY scripts/experiments/compare_unets.py runs/ldm/model.safetensors ldm_course/assets/pretrained/unet.safetensors \
  runs/ldm-3/model.safetensors runs/ldm-3g/model.safetensors --guidance 1 --seeds 0 1 2 3 \
  --out benchmarks/results/compare_unets.json
