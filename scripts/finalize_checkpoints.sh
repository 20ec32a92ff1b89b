#!/usr/bin/env bash
# After the cpu-full runs finish: ship fp16 weights, evaluate the shipped files on the test split,
# write the model cards from that evaluation, and render the README's sample grid.
#   bash scripts/finalize_checkpoints.sh runs/vae-lpips runs/vae-l1 runs/ldm
set -euo pipefail
VAE=$1 VAE_L1=$2 LDM=$3
PY=${PY:-.venv/bin/python}
$PY -c "from ldm_course.pretrained import export; export('$VAE', 'vae'); export('$LDM', 'unet')"
$PY -m ldm_course evaluate --device cpu --compare-vae "$VAE_L1/model.safetensors" ${EXTRA_COMPARE:-} --out benchmarks/results/evaluation.json
$PY scripts/ship_checkpoints.py --vae "$VAE" --vae-l1 "$VAE_L1" --ldm "$LDM" --evaluation benchmarks/results/evaluation.json --notes "${NOTES:-}"
$PY -m ldm_course sample --device cpu --n 64 --seed 0 --out images/samples.png
