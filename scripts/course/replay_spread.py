"""Measure how far each notebook's live figures move between CPU settings.

Replays the notebooks (`pytest --nbval`, from the repository root) once per setting: the default
instruction set, AVX2 only, AVX-512 (where the CPU has it) and two threads instead of one. Each run
records the live and saved value of every number that a cell's `replay.numbers` metadata compares
(ldm_course/course/nbval_tolerance.py, through the LDM_COURSE_REPLAY_RECORD variable), in output
order, so the numbers of one spec text form one figure. Prints, per figure, its spread (largest
minus smallest over the settings), the largest distance from the saved value, the tolerance and how
many spreads fit into it; writes the same to a JSON file. This is where the tolerances come from.

    .venv/bin/python scripts/course/replay_spread.py                       # learner notebooks, all settings
    .venv/bin/python scripts/course/replay_spread.py --notebooks notebooks/01_vae.ipynb --jobs 2
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cpu_settings import SETTINGS  # this script's folder is on sys.path when it runs

from ldm_course.infra.checkpoint import atomic_write

ROOT = Path(__file__).resolve().parents[2]


def cpu_capability(env: dict) -> str:
    """What torch reports as its CPU capability under these variables (e.g. 'AVX2', 'AVX512')."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def execute(notebook: Path, env: dict, record: Path, workdir: Path) -> float:
    """Replay `notebook` under `env`, recording its compared numbers; return the wall time in seconds.
    A number outside its tolerance fails the replay but is still a measurement, so the exit status
    is not checked; `workdir` receives the replay's output."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "--nbval", "-q", "-p", "no:cacheprovider", str(notebook)]
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | env
    env["LDM_COURSE_REPLAY_RECORD"] = str(record)
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    (workdir / f"{notebook.stem}.log").write_text(run.stdout + run.stderr, encoding="utf-8")
    return time.perf_counter() - start


def read_records(path: Path) -> dict:
    """name -> {"live": [...], "saved": [...], "tol"}: the numbers recorded under one name (a spec's
    text), in the order they were compared."""
    if not path.exists():
        return {}
    figures: dict = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        entry = figures.setdefault(r["name"], {"live": [], "saved": [], "tol": r["tol"]})
        entry["live"] += r["live"]
        entry["saved"] += r["saved"]
        entry["tol"] = max(entry["tol"], r["tol"])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notebooks", nargs="+", type=Path, default=sorted((ROOT / "notebooks").glob("0*.ipynb"))
    )
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed side by side")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "replay_spread.json"
    )
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    settings = {}
    for name in args.settings:
        capability = cpu_capability(SETTINGS[name])
        if name == "avx512" and "AVX512" not in capability:
            print(f"skipping avx512: this CPU runs torch at {capability}, it has no AVX-512")
            continue
        settings[name] = capability
    print(
        "settings:",
        ", ".join(
            f"{n} ({c}, {SETTINGS[n]['OMP_NUM_THREADS']} thread(s))" for n, c in settings.items()
        ),
    )

    with tempfile.TemporaryDirectory(prefix="replay-spread-") as tmp:
        jobs = []
        for setting in settings:
            for nb in args.notebooks:
                work = Path(tmp) / setting.replace(" ", "_")
                work.mkdir(exist_ok=True)
                jobs.append((setting, nb.resolve(), work / f"{nb.stem}.jsonl", work))
        with ThreadPoolExecutor(args.jobs) as pool:
            times = list(pool.map(lambda j: execute(j[1], SETTINGS[j[0]], j[2], j[3]), jobs))
        for (setting, nb, _, _), seconds in zip(jobs, times, strict=True):
            print(f"  {setting:<10} {nb.name:<28} {seconds:6.0f} s")
        values: dict = {}
        for setting, nb, record, _ in jobs:
            for name, r in read_records(record).items():
                entry = values.setdefault(
                    f"{nb.stem}: {name}", {"saved": r["saved"], "tol": r["tol"], "live": {}}
                )
                entry["live"][setting] = r["live"]

    print(f"\n{'figure':<60}{'spread':>11}{'|live-saved|':>14}{'tolerance':>11}{'tol/spread':>11}")
    for key, e in values.items():
        runs = list(e["live"].values())  # one list of values per setting
        e["spread"] = max(max(vs) - min(vs) for vs in zip(*runs, strict=True))
        e["max_from_saved"] = max(
            abs(v - s) for vs in runs for v, s in zip(vs, e["saved"], strict=True)
        )
        ratio = e["tol"] / e["spread"] if e["spread"] > 0 else float("inf")
        print(
            f"{key[:59]:<60}{e['spread']:>11.3g}{e['max_from_saved']:>14.3g}{e['tol']:>11.3g}{ratio:>11.3g}"
        )
    report = {"settings": settings, "figures": values}
    atomic_write(
        args.out, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    )
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
