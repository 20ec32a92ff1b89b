#!/usr/bin/env bash
# Regenerate the learner edition from the solved edition, then execute both editions in place so
# each carries its own saved outputs. Prints the wall time of every notebook.
#   bash scripts/execute_notebooks.sh            # all five, both editions
set -euo pipefail
PY=${PY:-.venv/bin/python}
unset MPLBACKEND
# one thread, as pytest --nbval replays them (root conftest.py): printed losses then match to the digit
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
$PY -m ldm_course.editions solutions notebooks
for edition in ${EDITIONS:-notebooks solutions}; do
  for nb in $edition/0*.ipynb; do
    start=$(date +%s.%N)
    $PY -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 "$nb" 2>/dev/null
    printf '%-40s %6.1f s\n' "$nb" "$(echo "$(date +%s.%N) - $start" | bc)"
  done
done
