#!/usr/bin/env bash
# After the cpu-full runs finish: ship fp16 weights, evaluate the shipped files on the test split,
# write the model cards from that evaluation, and render the sample grids (README,
# docs/experiments/finer-labels.md).
#   bash scripts/release/finalize_checkpoints.sh runs/vae-ft runs/vae-l1 runs/ldm-2 [runs/ldm-sub]
# The optional fourth run is the U-Net conditioned on the 99 subcategories (unet-subcategory).
set -euo pipefail
VAE=$1 VAE_L1=$2 LDM=$3 LDM_SUB=${4:-}
PY=${PY:-.venv/bin/python}
$PY -c "from ldm_course.pretrained import export; export('$VAE', 'vae'); export('$LDM', 'unet')"
$PY -m ldm_course evaluate --device cpu --compare-vae "$VAE_L1/model.safetensors" ${EXTRA_COMPARE:-} --out benchmarks/results/evaluation.json
SUB=()
if [ -n "$LDM_SUB" ]; then
  $PY -c "from ldm_course.pretrained import export; export('$LDM_SUB', 'unet-subcategory')"
  $PY -m ldm_course evaluate --device cpu --ldm pretrained-subcategory --out benchmarks/results/evaluation-subcategory.json
  SUB=(--ldm-subcategory "$LDM_SUB" --evaluation-subcategory benchmarks/results/evaluation-subcategory.json --notes-subcategory "${NOTES_SUB:-}")
fi
$PY scripts/release/ship_checkpoints.py --vae "$VAE" --vae-l1 "$VAE_L1" --ldm "$LDM" --evaluation benchmarks/results/evaluation.json --notes "${NOTES:-}" "${SUB[@]}"
$PY -m ldm_course sample --device cpu --n 64 --seed 0 --out images/samples.png
if [ -n "$LDM_SUB" ]; then
  $PY -m ldm_course sample --device cpu --ldm pretrained-subcategory --n 64 --seed 0 --out images/samples-subcategory.png
fi
