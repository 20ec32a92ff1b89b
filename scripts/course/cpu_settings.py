"""The CPU settings under which the saved notebook outputs must replay: the one list that
replay_settings.sh, replay_spread.py and docs/NOTEBOOK_GUIDE.md refer to.

    python scripts/course/cpu_settings.py            # the names, one per line
    python scripts/course/cpu_settings.py avx2       # its variables: ATEN_CPU_CAPABILITY=avx2 ...
"""

import sys

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SETTINGS = {
    "default": ONE_THREAD,  # the instruction set torch picks on this CPU, one thread
    "avx2": {**ONE_THREAD, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},  # a laptop
    "avx512": {**ONE_THREAD, "ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "2 threads": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},  # reductions split in two
}


def main(argv: list[str]) -> int:
    if not argv:
        print("\n".join(SETTINGS))
        return 0
    if argv[0] not in SETTINGS:
        names = ", ".join(repr(n) for n in SETTINGS)
        print(f"unknown setting {argv[0]!r}: use one of {names}", file=sys.stderr)
        return 2
    print(" ".join(f"{k}={v}" for k, v in SETTINGS[argv[0]].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
