#!/usr/bin/env bash
# The category U-Net's GPU recipe, end to end: train on the shipped VAE's latents, then score it
# (`ldm-course evaluate`: recognisability with the shipped category judge at guidance 1 and 3,
# Frechet distance on the whole test split, near copies).
#   bash scripts/release/train_on_gpu.sh          # one GPU; budget 9 minutes in all; STEPS=6000 is
#                                                 # an estimate: this script has not run on a GPU yet
#   TINY=1 bash scripts/release/train_on_gpu.sh   # the same two commands at a tiny size on the CPU
# Rerun after an interruption: the training resumes from its last checkpoint, a finished run is kept.
# Writes $RUN/model.safetensors (the EMA weights, as `ldm-course sample --ldm $RUN` loads them) and
# $RUN/evaluation.json. Ship it only if it beats the shipped U-Net on the score without more copies.
set -euo pipefail
CLI=${CLI:-.venv/bin/ldm-course}
if [ "${TINY:-0}" = 1 ]; then
  RUN=${RUN:-runs/ldm-gpu-tiny}
  train=(--preset cpu-fast --device cpu --set steps=20 --set sample_every=0 --set checkpoint_every=10
    --set log_every=5)
  score=(--device cpu --skip-ddpm)
else
  RUN=${RUN:-runs/ldm-gpu}
  train=(--preset gpu --set "steps=${STEPS:-6000}" --set checkpoint_every=500 --set sample_every=0)
  score=(--ddpm-samples 64)
fi
start=$(date +%s)
if [ ! -f "$RUN/history.json" ]; then  # history.json is written when a run ends
  resume=()
  [ -f "$RUN/checkpoint.safetensors" ] && resume=(--resume)
  "$CLI" train-ldm "${train[@]}" --run-dir "$RUN" "${resume[@]}"
fi
trained=$(date +%s)
"$CLI" evaluate --ldm "$RUN" "${score[@]}" --num-samples 398 --out "$RUN/evaluation.json"
echo "train_on_gpu: trained in $((trained - start)) s, scored in $(($(date +%s) - trained)) s: $RUN/evaluation.json"
