"""Compare U-Net runs (same VAE) on the whole test split, split by category: People & Body (219
of 398 test images, many skin-tone variants per emoji) against the other categories (one image per
emoji). Each model draws one sample per test image, with that image's label (its category, or its
subcategory for a model trained with labels=subcategory), from the same noise (seed), so the rows
differ only in the U-Net (and, for a subcategory model, the finer label it is given). Repeat with
several seeds: at these sizes the seed alone moves a Frechet distance by 0.04-0.25 (standard
deviations over four seeds in benchmarks/results/compare_unets.json), more than the stages of the
shipped U-Net differ.

    python scripts/experiments/compare_unets.py ldm_course/assets/pretrained/unet.safetensors runs/ldm-3 \\
        --seeds 0 1 2 3 --out benchmarks/results/compare_unets.json

Reports, per model and guidance scale: the Frechet distance (FeatureExtractor space, metrics.py)
to the test images of all categories, of People & Body, and of the others; and how many samples
lie within RMSE 0.05 of a training image (near copies), and of a training image or its mirror image
(what a model trained with flip=true might copy); then the mean and standard deviation over
seeds. Distances on fewer images are larger (the estimate's bias grows as N shrinks): compare rows
at the same N only.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from ldm_course.course.viz import save_grid
from ldm_course.data import twemoji, twemoji_labels_of
from ldm_course.infra.checkpoint import atomic_write
from ldm_course.metrics import FeatureExtractor, frechet_distance, nearest_neighbours
from ldm_course.pretrained import load_ldm
from ldm_course.training.evaluate import NEAR_DUPLICATE_RMSE

SUBSETS = ("all", "People & Body", "other categories")


def one_row(ldm, path, w, seed, steps, test, train, features, real, y=None, grid=None) -> dict:
    """Sample once per test image at guidance w from seed; distances and copies per subset.

    test holds category labels (for the subsets); y (N,) the labels the model is conditioned on,
    by default the same categories (model_labels gives a subcategory model its own).
    grid: a PNG path for the samples of the first 64 test images outside People & Body.
    """
    people = test.labels == test.class_names.index("People & Body")  # (N,)
    masks = dict(zip(SUBSETS, (torch.ones_like(people), people, ~people), strict=True))
    start = time.perf_counter()
    images = ldm.generate(
        len(test),
        steps=steps,
        y=test.labels if y is None else y,
        guidance_scale=w,
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    row = {"unet": path, "guidance": w, "seed": seed, "steps": steps}
    row["seconds"] = time.perf_counter() - start
    if grid is not None:
        save_grid(images[~people][:64].cpu(), grid)
    fake = features.batched(images)
    _, rmse = nearest_neighbours(images, train.images)  # (N,)
    copies = rmse < NEAR_DUPLICATE_RMSE
    # a model trained with flip=true may copy a mirror image, which the check above cannot see
    _, rmse_mirror = nearest_neighbours(images, train.images.flip(-1))  # (N,)
    either = torch.minimum(rmse, rmse_mirror) < NEAR_DUPLICATE_RMSE
    for name, m in masks.items():
        row[name] = {
            "images": int(m.sum()),
            "fd": frechet_distance(real[m], fake[m]),
            "near_copies": int(copies[m].sum()),
            "near_copies_or_mirror": int(either[m].sum()),
        }
    return row


def model_labels(ldm, tests: dict) -> torch.Tensor:
    """The test split's labels in the model's own label space (categories or subcategories)."""
    return tests[twemoji_labels_of(ldm.class_names)].labels


def format_row(row: dict) -> str:
    return f"{row['unet']}  guidance {row['guidance']:g}, seed {row['seed']}: " + "; ".join(
        f"{n} FD {row[n]['fd']:.3f} (N={row[n]['images']}, copies {row[n]['near_copies']}, "
        f"with mirror images {row[n]['near_copies_or_mirror']})"
        for n in SUBSETS
    )


def summarise(rows: list[dict], unet: str, w: float) -> dict:
    """Mean and standard deviation over the seeds of one model's rows at guidance w."""
    mine = [r for r in rows if r["unet"] == unet and r["guidance"] == w]

    def stats(name: str, key: str) -> dict:
        v = torch.tensor([float(r[name][key]) for r in mine])
        return {"mean": v.mean().item(), "std": v.std().item() if len(v) > 1 else 0.0}

    entry = {"unet": unet, "guidance": w, "seeds": [r["seed"] for r in mine]}
    for name in SUBSETS:
        entry[name] = {
            key: stats(name, key) for key in ("fd", "near_copies", "near_copies_or_mirror")
        }
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("unets", nargs="+", help="U-Net run folders or .safetensors files")
    p.add_argument("--vae", default=None, help="VAE (default: the shipped one)")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", default="benchmarks/results/compare_unets.json")
    p.add_argument(
        "--grids",
        type=Path,
        default=None,
        help="folder for one PNG per model (first seed and guidance): samples of the first 64 "
        "test images outside People & Body, plus those test images themselves",
    )
    args = p.parse_args()

    test, train = twemoji("test"), twemoji("train")
    tests = {"category": test, "subcategory": twemoji("test", labels="subcategory")}
    features = FeatureExtractor()
    real = features.batched(test.images)  # (N, 1152)
    rows = []
    if args.grids is not None:
        args.grids.mkdir(parents=True, exist_ok=True)
        people = test.labels == test.class_names.index("People & Body")
        save_grid(test.images[~people][:64], args.grids / "test-images.png")
    for i, path in enumerate(args.unets):
        ldm = load_ldm(path, args.vae)
        y = model_labels(ldm, tests)
        for w in args.guidance:
            for seed in args.seeds:
                first = w == args.guidance[0] and seed == args.seeds[0]
                grid = args.grids / f"{i}-{Path(path).parent.name}.png" if args.grids else None
                row = one_row(
                    ldm,
                    str(path),
                    w,
                    seed,
                    args.steps,
                    test,
                    train,
                    features,
                    real,
                    y,
                    grid if first else None,
                )
                rows.append(row)
                print(format_row(rows[-1]), flush=True)
    summary = [summarise(rows, str(path), w) for path in args.unets for w in args.guidance]
    for entry in summary:
        print(
            f"{entry['unet']}  guidance {entry['guidance']:g}, {len(entry['seeds'])} seeds: "
            + "; ".join(
                f"{n} FD {entry[n]['fd']['mean']:.3f} +- {entry[n]['fd']['std']:.3f}, "
                f"copies {entry[n]['near_copies']['mean']:.1f} "
                f"({entry[n]['near_copies_or_mirror']['mean']:.1f} with mirror images)"
                for n in SUBSETS
            ),
            flush=True,
        )
    report = {"test_images": len(test), "vae": args.vae, "summary": summary, "rows": rows}
    atomic_write(Path(args.out), lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))


if __name__ == "__main__":
    main()
