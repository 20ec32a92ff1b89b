"""`ldm-course bench` (also `python -m ldm_course.bench`): the course's benchmarks. Each prints its
tables and writes one JSON file, with the machine it ran on, under --out (default
benchmarks/results/):

- latent-vs-pixel  the same U-Net family on 4x8x8 latents and on 3x64x64 pixels (latent_vs_pixel.py)
- diffusers        our VAE and U-Net against diffusers with matching configurations (against_diffusers.py)
- efficiency       GFLOP/s of a U-Net training step as a fraction of a large matmul's (efficiency.py)
- quality          sample quality against DDIM / DDPM steps for the shipped model (quality.py)

Every comparison is a ratio measured within one run on one machine, interleaved and after warm-up
(see measure.py). Times from a machine shared with other jobs are noisy: say so with --note.

    ldm-course bench --only latent-vs-pixel diffusers efficiency --threads 1    # ~5 min, 2-core CPU
    ldm-course bench --only quality --num-images 64 --skip-ddpm   # the shipped model; DDPM is slow
    ldm-course bench --tiny --out /tmp/bench          # seconds: proves that everything still runs
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal, get_args

import torch

from ldm_course.bench.against_diffusers import TINY_DIFFUSERS, DiffusersSizes, against_diffusers
from ldm_course.bench.efficiency import TINY_EFFICIENCY, EfficiencySizes, compute_efficiency
from ldm_course.bench.latent_vs_pixel import (
    TINY_LATENT_VS_PIXEL,
    LatentVsPixelSizes,
    latent_vs_pixel,
)
from ldm_course.bench.measure import CLOCKS
from ldm_course.infra.checkpoint import atomic_write
from ldm_course.infra.device import check_device

Benchmark = Literal["latent-vs-pixel", "diffusers", "efficiency", "quality"]
BENCHMARKS: tuple[str, ...] = get_args(Benchmark)
Distance = Literal["features", "pixels"]
DISTANCES: tuple[str, ...] = get_args(Distance)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ldm-course bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=list(BENCHMARKS),
        metavar="NAME",
        help=f"benchmarks to run, among {', '.join(BENCHMARKS)} (default: all)",
    )
    p.add_argument(
        "--tiny", action="store_true", help="tiny sizes: a smoke test, not a measurement"
    )
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON files")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per function (medians)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto (cuda, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--clock",
        default="wall",
        help="wall, or cpu: CPU seconds of this process, robust to other jobs on the "
        "machine; needs --threads 1 and a CPU device",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--note", default="", help="recorded in every JSON file, e.g. other load")
    g = p.add_argument_group("latent-vs-pixel")
    g.add_argument("--train-batch", type=int, default=None, help="training-step batch (default 8)")
    g.add_argument("--sample-batch", type=int, default=None, help="sampling batch (default 1)")
    g = p.add_argument_group("quality")
    g.add_argument("--num-images", type=int, default=256, help="samples per setting (= references)")
    g.add_argument(
        "--guidance-scale", type=float, default=3.0, help="classifier-free guidance w (default 3)"
    )
    g.add_argument("--skip-ddpm", action="store_true", help="skip the slow all-T-steps DDPM row")
    g.add_argument("--distance", default="features", help=f"one of {', '.join(DISTANCES)}")
    g.add_argument(
        "--plot",
        default=None,
        help="image path of the plot, .png, .pdf, .svg or .jpg (default "
        "images/quality_vs_steps.png; with --tiny: under --out)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        device = resolve_device(args.device)
        if args.clock == "cpu" and (args.threads != 1 or device.type != "cpu"):
            raise ValueError(
                "--clock cpu counts one thread's work: use it with --threads 1 and --device cpu"
            )
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        quality_inputs = prepare_quality(args, device) if "quality" in args.only else None
        for name in args.only:
            machine = machine_info(device, note=args.note)
            start = time.perf_counter()
            result = run_benchmark(name, args, device, quality_inputs)
            machine["load_average_at_end"] = list(os.getloadavg())
            machine["benchmark_wall_s"] = time.perf_counter() - start
            for title, rows in result["tables"].items():
                print_table(rows, title=f"{name}: {title}")
            path = write_result(Path(args.out), name, result, machine, tiny=args.tiny)
            print(f"wrote {path}\n")
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"ldm-course bench: error: {err}", file=sys.stderr)
        return 2
    return 0


def check_args(args: argparse.Namespace) -> None:
    unknown = [n for n in args.only if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; choose among {', '.join(BENCHMARKS)}")
    if args.distance not in DISTANCES:
        raise ValueError(f"--distance must be one of {', '.join(DISTANCES)}, got {args.distance!r}")
    if args.clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {', '.join(CLOCKS)}, got {args.clock!r}")
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    check_outputs(args)


def check_outputs(args: argparse.Namespace) -> None:
    """--out (a folder for the JSON files) and the quality plot, checked before anything runs."""
    from ldm_course.cli.args import FIGURE_OUT, check_output
    from ldm_course.infra.run_folder import check_writable

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out {out} is a file; --out is the folder for the JSON results: give a folder path "
            "(created if missing)"
        )
    check_writable(out, f"--out {out}")
    if "quality" not in args.only:
        return
    if args.plot is not None:
        check_output(args.plot, suffixes=FIGURE_OUT, what="--plot")
    else:
        check_writable(default_plot(args).parent, f"the quality plot {default_plot(args)}")


def default_plot(args: argparse.Namespace) -> Path:
    """Where the quality plot goes without --plot: images/, or with --tiny under --out."""
    if args.tiny:
        return Path(args.out) / "quality_vs_steps.png"
    return Path("images") / "quality_vs_steps.png"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name, what=f"--device {name}")


def run_benchmark(
    name: str, args: argparse.Namespace, device: torch.device, quality_inputs: dict | None
) -> dict:
    common = dict(
        device=device, repeats=args.repeats, warmup=args.warmup, seed=args.seed, clock=args.clock
    )
    if name == "latent-vs-pixel":
        sizes = TINY_LATENT_VS_PIXEL if args.tiny else LatentVsPixelSizes()
        batches = {"train_batch": args.train_batch, "sample_batch": args.sample_batch}
        sizes = replace(sizes, **{k: v for k, v in batches.items() if v is not None})
        return latent_vs_pixel(sizes, **common)
    if name == "diffusers":
        return against_diffusers(TINY_DIFFUSERS if args.tiny else DiffusersSizes(), **common)
    if name == "efficiency":
        return compute_efficiency(TINY_EFFICIENCY if args.tiny else EfficiencySizes(), **common)
    return run_quality(args, quality_inputs)


def prepare_quality(args: argparse.Namespace, device: torch.device) -> dict:
    """The model, references, labels and distance, resolved before any benchmark runs so that a
    missing checkpoint fails at once. --tiny: a random tiny model, random references, pixels."""
    from ldm_course.bench.quality import default_settings, feature_frechet, pooled_pixel_frechet

    if args.tiny:
        from ldm_course.bench.quality import tiny_ldm

        ldm = tiny_ldm(seed=args.seed).to(device)
        gen = torch.Generator().manual_seed(args.seed)
        refs = torch.rand((4, 3, ldm.image_size, ldm.image_size), generator=gen) * 2 - 1
        return {
            "ldm": ldm,
            "references": refs,
            "labels": None,
            "distance_fn": pooled_pixel_frechet,
            "distance": "pixels",
            "settings": (("ddim", 2), ("ddim", 5), ("ddpm", 20)),
        }
    from ldm_course.data import twemoji
    from ldm_course.pretrained import load_ldm

    ldm = load_ldm(device=device)
    test = twemoji("test", size=ldm.image_size)
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))
    pick = pick[: args.num_images]  # (N,) indices of the held-out split
    labels = test.labels[pick].to(device) if ldm.unet.cfg.num_classes else None
    distance_fn = feature_frechet() if args.distance == "features" else pooled_pixel_frechet
    return {
        "ldm": ldm,
        "references": test.images[pick],
        "labels": labels,
        "distance_fn": distance_fn,
        "distance": args.distance,
        "settings": default_settings(ldm.schedule.num_steps, ddpm=not args.skip_ddpm),
    }


def run_quality(args: argparse.Namespace, inputs: dict) -> dict:
    from ldm_course.bench.quality import plot_quality, quality_vs_steps

    result = quality_vs_steps(
        inputs["ldm"],
        inputs["references"],
        inputs["distance_fn"],
        settings=inputs["settings"],
        labels=inputs["labels"],
        guidance_scale=args.guidance_scale,
        seed=args.seed,
    )
    name = {
        "features": "Frechet distance (FeatureExtractor)",
        "pixels": "Frechet distance (4x4 pooled pixels)",
    }[inputs["distance"]]
    plot = plot_quality(
        result["tables"]["quality versus steps"],
        args.plot or default_plot(args),
        distance_name=name,
    )
    return {**result, "distance": name, "plot": str(plot)}


def machine_info(device: torch.device, *, note: str = "") -> dict:
    """What the numbers depend on: versions, device, threads, CPU model, load, date."""
    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "load_average_1m_5m_15m": list(os.getloadavg()),  # at the start
        "note": note,
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_model() -> str:
    """The 'model name' line of /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_result(out: Path, name: str, result: dict, machine: dict, *, tiny: bool) -> Path:
    """out/<name>.json holding the benchmark's result, the machine and whether sizes were tiny."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    payload = {"benchmark": name, "tiny": tiny, "machine": machine, **result}
    atomic_write(path, lambda p: p.write_text(json.dumps(payload, indent=2, default=str) + "\n"))
    return path


def print_table(rows: list[dict], *, title: str) -> None:
    """The one printer: rows of dicts as aligned columns, numbers to 4 significant digits."""
    if not rows:
        return
    columns = list(rows[0])
    cells = [[_format(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
