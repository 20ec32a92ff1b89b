#!/usr/bin/env bash
# On a machine with a CUDA GPU: run the five learner notebooks, which take their GPU branches there
# (gpu presets, precision="auto"), and time `ldm-course train-ldm --preset gpu` for a few hundred
# steps. Prepared for the first lent GPU; meant to finish within 10 minutes on a current datacenter
# GPU (not yet measured: no GPU has run it).
#   bash scripts/course/gpu_check.sh                 # writes benchmarks/results/gpu_check/
#   STEPS=300 NOTEBOOKS="01_vae 04_latent_diffusion" bash scripts/course/gpu_check.sh
# Writes, under benchmarks/results/gpu_check/:
#   summary.json       GPU name and compute capability, torch version, the precision chosen, per
#                      notebook: exit status and seconds; train-ldm: steps, seconds, steps per second
#   NN_name.ipynb      each executed notebook (its GPU-branch outputs, its errors if any)
#   train-ldm.log      the training command's output (its "precision: ..." line among it)
# Exits non-zero if a notebook or the training run fails; the summary is written either way.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-300}
NOTEBOOKS=${NOTEBOOKS:-"01_vae 02_perceptual_loss 03_latent_scaling 04_latent_diffusion 05_end_to_end"}
OUT=benchmarks/results/gpu_check
mkdir -p "$OUT"
unset MPLBACKEND

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 2
fi

results=$(mktemp)
status=0
for name in $NOTEBOOKS; do
  start=$(date +%s.%N)
  "$PY" -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=900 \
    --output-dir "$OUT" "notebooks/$name.ipynb" >"$OUT/$name.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || status=1
  printf '%s %s %s\n' "$name" "$rc" "$(echo "$(date +%s.%N) - $start" | bc)" >>"$results"
  echo "notebook $name: exit $rc"
done

run_dir=$(mktemp -d)
start=$(date +%s.%N)
"$PY" -m ldm_course train-ldm --preset gpu --set steps="$STEPS" --set sample_every=0 \
  --set checkpoint_every="$STEPS" --run-dir "$run_dir/ldm" >"$OUT/train-ldm.log" 2>&1
train_rc=$?
train_s=$(echo "$(date +%s.%N) - $start" | bc)
[ $train_rc -eq 0 ] || status=1
rm -rf "$run_dir"

"$PY" - "$results" "$STEPS" "$train_rc" "$train_s" "$OUT/summary.json" <<'EOF'
import json, sys, torch
from ldm_course.infra.checkpoint import atomic_write
from ldm_course.infra.precision import choose_precision
results, steps, train_rc, train_s, out = sys.argv[1:]
device = torch.device("cuda")
summary = {
    "gpu": torch.cuda.get_device_name(device),
    "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
    "torch": torch.__version__,
    "precision_auto": choose_precision(device, "auto"),
    "notebooks": {
        name: {"exit": int(rc), "seconds": round(float(s), 1)}
        for name, rc, s in (line.split() for line in open(results))
    },
    "train_ldm_gpu_preset": {
        "steps": int(steps), "exit": int(train_rc), "seconds": round(float(train_s), 1),
        "steps_per_second": round(int(steps) / float(train_s), 2),
        "note": "wall time of the whole command: start-up and latent caching included",
    },
}
atomic_write(out, lambda tmp: tmp.write_text(json.dumps(summary, indent=1) + "\n"))
print(json.dumps(summary, indent=1))
EOF
rm -f "$results"
exit $status
