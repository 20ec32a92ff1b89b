#!/usr/bin/env bash
# Replay notebooks with `pytest` (nbval) under several CPU settings: the saved outputs must pass on
# any instruction set and thread count (ldm_course/course/replay.py explains how).
#   bash scripts/course/replay_settings.sh                        # learner notebooks, all four settings
#   bash scripts/course/replay_settings.sh avx2 "2 threads"       # some settings
#   EDITION=solutions bash scripts/course/replay_settings.sh avx2 # the solved edition
# Settings: default | avx2 | avx512 | "2 threads". avx512 is skipped, with a message, on a CPU
# without AVX-512. Exits non-zero if any replay fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
EDITION=${EDITION:-notebooks}
unset MPLBACKEND  # notebooks need their inline backend
[ $# -gt 0 ] || set -- default avx2 avx512 "2 threads"
failed=()
for setting in "$@"; do
  vars=(OMP_NUM_THREADS=1 MKL_NUM_THREADS=1)
  case "$setting" in
    default) ;;
    avx2) vars+=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2) ;;
    avx512) vars+=(ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE) ;;
    "2 threads") vars=(OMP_NUM_THREADS=2 MKL_NUM_THREADS=2) ;;
    *) echo "unknown setting '$setting': use default, avx2, avx512 or '2 threads'" >&2; exit 2 ;;
  esac
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
