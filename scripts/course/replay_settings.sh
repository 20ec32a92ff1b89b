#!/usr/bin/env bash
# Replay notebooks with `pytest` (nbval) under several CPU settings: the saved outputs must pass on
# any instruction set and thread count (ldm_course/course/replay.py explains how).
#   bash scripts/course/replay_settings.sh                        # learner notebooks, all four settings
#   bash scripts/course/replay_settings.sh avx2 "2 threads"       # some settings
#   EDITION=solutions bash scripts/course/replay_settings.sh avx2 # the solved edition
# Settings: the names in scripts/course/cpu_settings.py (default, avx2, avx512, "2 threads"). avx512
# is skipped, with a message, on a CPU without AVX-512. Exits non-zero if any replay fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
EDITION=${EDITION:-notebooks}
unset MPLBACKEND  # notebooks need their inline backend
SETTINGS="scripts/course/cpu_settings.py"
if [ $# -eq 0 ]; then
  mapfile -t names < <("$PY" "$SETTINGS")
  set -- "${names[@]}"
fi
failed=()
for setting in "$@"; do
  line=$("$PY" "$SETTINGS" "$setting") || exit 2  # the script names the known settings
  read -r -a vars <<< "$line"
  capability=$(env "${vars[@]}" "$PY" -c "import torch; print(torch.backends.cpu.get_cpu_capability())")
  if [ "$setting" = avx512 ] && [[ "$capability" != AVX512* ]]; then
    echo "== $setting: skipped, this CPU has no AVX-512 (torch runs at $capability)"
    continue
  fi
  echo "== $EDITION under $setting (torch CPU capability $capability; ${vars[*]})"
  start=$(date +%s)
  if env "${vars[@]}" "$PY" -m pytest -q -p no:cacheprovider "$EDITION"; then
    echo "== $setting: passed in $(( $(date +%s) - start )) s"
  else
    echo "== $setting: FAILED"
    failed+=("$setting")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "replay failed under: ${failed[*]}" >&2
  exit 1
fi
