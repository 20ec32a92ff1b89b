#!/usr/bin/env bash
# Regenerate the learner edition from the solved edition, then execute both editions in place so
# each carries its own saved outputs. Prints the wall time of every notebook.
#   bash scripts/course/execute_notebooks.sh                      # all five, both editions
#   EDITIONS=solutions bash scripts/course/execute_notebooks.sh   # the solved edition only
set -euo pipefail
PY=${PY:-.venv/bin/python}
unset MPLBACKEND
# one thread, the replay's default (root conftest.py); live figures replay under other settings too
# (checked with tolerances, ldm_course/course/replay.py), and this keeps the saved values reproducible here
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# offline, as the replay is (conftest.py): notebook 03's Stable Diffusion VAE cell saves its offline line
export HF_HUB_OFFLINE=1
EDITIONS=${EDITIONS:-notebooks solutions}
# the learner edition is regenerated (outputs cleared) only when it is executed here too
[[ " $EDITIONS " == *" notebooks "* ]] && $PY -m ldm_course.course.editions solutions notebooks
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for edition in $EDITIONS; do
  for nb in $edition/0*.ipynb; do
    start=$(date +%s.%N)
    if ! $PY -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 \
      "$nb" 2>"$log"; then
      tail -n 40 "$log" >&2
      echo "execute_notebooks: $nb failed (above: the end of its error)" >&2
      exit 1
    fi
    printf '%-40s %6.1f s\n' "$nb" "$(echo "$(date +%s.%N) - $start" | bc)"
  done
done
