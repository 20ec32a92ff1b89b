"""Copy the cpu-full runs into the package as the shipped checkpoints, with model cards.

    python scripts/ship_checkpoints.py --vae runs/vae-lpips --vae-l1 runs/vae-l1 --ldm runs/ldm \
        --evaluation evaluation.json

The card records the config, data, training time and hardware (from each run's history and this
machine), and the metrics of `ldm-course evaluate` (run it on the runs first and pass its JSON).
"""

import argparse
import json
import platform
from pathlib import Path

import torch

from ldm_course.checkpoint import load_json
from ldm_course.pretrained import export


def hardware() -> str:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return f"{cpu}, {torch.get_num_threads()} torch threads available, torch {torch.__version__}"


def run_summary(run: Path) -> dict:
    """Steps, time, last losses and config of a run; a run started from another's weights
    (init_from) also carries that run's summary and the totals over all its stages."""
    history = load_json(run / "history.json")
    summary = {
        "steps": history["step"][-1],
        "training_seconds": round(history["seconds"][-1]),
        "final_losses": {
            k: round(v[-1], 5) for k, v in history.items() if k not in ("step", "seconds")
        },
        "run_config": load_json(run / "config.json"),
    }
    parent = summary["run_config"].get("init_from")
    if parent:
        earlier = run_summary(Path(parent))
        summary["initialised_from"] = earlier
        summary["total_steps"] = summary["steps"] + earlier.get("total_steps", earlier["steps"])
        summary["total_training_seconds"] = summary["training_seconds"] + earlier.get(
            "total_training_seconds", earlier["training_seconds"]
        )
    return summary


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vae", type=Path, required=True)
    p.add_argument("--vae-l1", type=Path, required=True)
    p.add_argument("--ldm", type=Path, required=True)
    p.add_argument("--evaluation", type=Path, required=True)
    p.add_argument("--notes", default="")
    args = p.parse_args()
    ev = json.loads(args.evaluation.read_text())
    data = "Twemoji 16.0 (emoji-datasource-twitter@16.0.0), 64x64 on white, train split (3,388 images); metrics on the held-out test split (398 images, unseen base emoji). CC-BY 4.0, Twitter, Inc. and contributors."
    common = {
        "data": data,
        "hardware": hardware(),
        "recipe": "bash scripts/train_shipped.sh (every run the cpu-full preset; see README)",
    }
    export(
        args.vae,
        "vae",
        card={
            "title": "ldm-course VAE (f=8, 4 latent channels, L1 + LPIPS + KL)",
            **common,
            **run_summary(args.vae),
            "metrics_test_split": {"shipped": ev["vae"], "comparisons": ev["vae_compare"]},
            "comparison_run_without_lpips": run_summary(args.vae_l1),
            "latents": ev["latents"],
            "notes": args.notes,
        },
    )
    export(
        args.ldm,
        "unet",
        card={
            "title": "ldm-course latent U-Net (class-conditional on emoji category, classifier-free guidance)",
            **common,
            **run_summary(args.ldm),
            "scale_factor": ev["latents"]["scale_factor"],
            "frechet_distance": ev["frechet_distance"],
            "feature_space": ev["feature_space"],
            "nearest_training_image": {
                k: v for k, v in ev["nearest_training_image"].items() if k != "samples"
            },
            "num_samples": ev["num_samples"],
            "notes": args.notes,
        },
    )
    print("wrote ldm_course/assets/pretrained/{vae,unet}.{safetensors,json,md}")


if __name__ == "__main__":
    main()
