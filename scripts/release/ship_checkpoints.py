"""Write the model cards of the shipped checkpoints (scripts/release/finalize_checkpoints.sh runs it).

    python scripts/release/ship_checkpoints.py --vae runs/vae-ft --vae-l1 runs/vae-l1 --ldm runs/ldm-2 \
        --evaluation evaluation.json

The weights must already be exported from those runs (`ldm_course.pretrained.export`) and
evaluated (`ldm-course evaluate`, whose JSON is passed here); this checks that the shipped weights
are the runs' weights. The card records the config, data, training time and hardware (from each
run's history and this machine) and the evaluation's metrics.
"""

import argparse
import json
import platform
from pathlib import Path

import torch

from ldm_course.infra.checkpoint import load_json, load_tensors
from ldm_course.pretrained import pretrained_dir, write_card


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
    if parent and not Path(parent).is_dir():
        # a weights file (e.g. a shipped checkpoint): its own card tells its history
        summary["initialised_from"] = {"file": parent}
    elif parent:
        earlier = run_summary(Path(parent))
        summary["initialised_from"] = earlier
        summary["total_steps"] = summary["steps"] + earlier.get("total_steps", earlier["steps"])
        summary["total_training_seconds"] = summary["training_seconds"] + earlier.get(
            "total_training_seconds", earlier["training_seconds"]
        )
    return summary


def write_shipped_card(run: Path, name: str, card: dict) -> None:
    """The card beside the shipped `<name>.safetensors`, after checking it holds `run`'s weights."""
    shipped, meta = load_tensors(pretrained_dir() / f"{name}.safetensors")
    weights, _ = load_tensors(run / "model.safetensors")
    if shipped.keys() != weights.keys() or any(
        not torch.equal(shipped[k], v.to(shipped[k].dtype)) for k, v in weights.items()
    ):
        raise SystemExit(
            f"the shipped {name}.safetensors does not hold {run}'s weights: export it first "
            f"(ldm_course.pretrained.export('{run}', '{name}')) and evaluate it"
        )
    write_card(pretrained_dir() / name, {**card, "config": meta.get("config")})


def unet_card(title: str, run: Path, ev: dict, common: dict, notes: str) -> dict:
    """A U-Net's card: its run, and the sample metrics of its evaluation (`ldm-course evaluate`)."""
    return {
        "title": title,
        **common,
        **run_summary(run),
        "scale_factor": ev["latents"]["scale_factor"],
        "frechet_distance": ev["frechet_distance"],
        "feature_space": ev["feature_space"],
        "nearest_training_image": {
            k: v for k, v in ev["nearest_training_image"].items() if k != "samples"
        },
        "num_samples": ev["num_samples"],
        "notes": notes,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vae", type=Path, required=True)
    p.add_argument("--vae-l1", type=Path, required=True)
    p.add_argument("--ldm", type=Path, required=True)
    p.add_argument("--evaluation", type=Path, required=True)
    p.add_argument("--notes", default="")
    p.add_argument("--ldm-subcategory", type=Path, default=None, help="the subcategory U-Net's run")
    p.add_argument("--evaluation-subcategory", type=Path, default=None)
    p.add_argument("--notes-subcategory", default="")
    args = p.parse_args()
    if (args.ldm_subcategory is None) != (args.evaluation_subcategory is None):
        p.error("--ldm-subcategory and --evaluation-subcategory go together")
    ev = json.loads(args.evaluation.read_text())
    data = "Twemoji 16.0 (emoji-datasource-twitter@16.0.0), 64x64 on white, train split (3,388 images); metrics on the held-out test split (398 images, unseen base emoji). CC-BY 4.0, Twitter, Inc. and contributors."
    common = {
        "data": data,
        "hardware": hardware(),
        "recipe": "bash scripts/release/train_shipped.sh (every run the cpu-full preset; see docs/results.md)",
    }
    write_shipped_card(
        args.vae,
        "vae",
        {
            "title": "ldm-course VAE (f=8, 4 latent channels, L1 + LPIPS + KL)",
            **common,
            **run_summary(args.vae),
            "metrics_test_split": {"shipped": ev["vae"], "comparisons": ev["vae_compare"]},
            "comparison_run_without_lpips": run_summary(args.vae_l1),
            "latents": ev["latents"],
            "notes": args.notes,
        },
    )
    write_shipped_card(
        args.ldm,
        "unet",
        unet_card(
            "ldm-course latent U-Net (class-conditional on emoji category, classifier-free guidance)",
            args.ldm,
            ev,
            common,
            args.notes,
        ),
    )
    if args.ldm_subcategory:
        write_shipped_card(
            args.ldm_subcategory,
            "unet-subcategory",
            unet_card(
                "ldm-course latent U-Net (class-conditional on the 99 emoji subcategories, "
                "classifier-free guidance)",
                args.ldm_subcategory,
                json.loads(args.evaluation_subcategory.read_text()),
                common,
                args.notes_subcategory,
            ),
        )
    print("wrote the model cards in ldm_course/assets/pretrained/")


if __name__ == "__main__":
    main()
