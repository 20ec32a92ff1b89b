"""Train the recognisability judge (ldm_course.judge) on a real train split, and ship it.

    python -m ldm_course.training.train_judge --labels category     # ~2 min on one CPU thread
    python -m ldm_course.training.train_judge --labels subcategory
    python -m ldm_course.training.train_judge --labels live          # faces vs flags at 32 px

Each writes ldm_course/assets/pretrained/judge-<labels>.safetensors (its config, class names and
per-class ceiling in the metadata) and a model card beside it. Deterministic: one seeded generator
for the initialisation, one per epoch for the order, one per step for the augmentation.
"""

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ldm_course.course.live import live_subset
from ldm_course.data import TensorImageDataset, twemoji
from ldm_course.infra.checkpoint import save_tensors
from ldm_course.judge import Judge, JudgeConfig, augment, judge_ceiling
from ldm_course.pretrained import pretrained_dir, write_card

JUDGE_LABELS = ("category", "subcategory", "live")


def judge_data(labels: str) -> tuple[TensorImageDataset, TensorImageDataset, int]:
    """(train, test, image size) of the real images a judge of `labels` is trained and tested on."""
    if labels not in JUDGE_LABELS:
        raise ValueError(f"labels must be one of {', '.join(JUDGE_LABELS)}, got {labels!r}")
    if labels == "live":
        return live_subset("train", size=32), live_subset("test", size=32), 32
    return twemoji("train", labels=labels), twemoji("test", labels=labels), 64


def train_judge(
    train: TensorImageDataset,
    *,
    size: int,
    steps: int = 800,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> Judge:
    """AdamW on a class-balanced cross-entropy (weights 1 / sqrt(class count): a rare class counts
    more without being memorised), cosine learning rate, augmented views (`judge.augment`)."""
    k = train.num_classes
    with torch.random.fork_rng(devices=[]):  # seeds the initialisation, restores the caller's RNG
        torch.manual_seed(seed)
        judge = Judge(JudgeConfig(num_classes=k, size=size))
    counts = torch.bincount(train.labels, minlength=k).double()  # (K,)
    weight = torch.where(counts > 0, counts.clamp(min=1).rsqrt(), torch.zeros_like(counts))
    weight = (weight / (weight * counts).sum() * counts.sum()).float()  # mean weight per item 1
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(train)
    batch_size = min(batch_size, n)
    per_epoch = n // batch_size
    for step in tqdm(range(steps), desc="judge", disable=not progress):
        epoch, k_batch = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        idx = order[k_batch * batch_size : (k_batch + 1) * batch_size]  # (B,)
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)  # this step's augmentation
        x = augment(train.images[idx], generator=g)  # (B, 3, S, S)
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = F.cross_entropy(judge(x), train.labels[idx], weight=weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"judge loss is {loss.item()} at step {step}; lower lr ({lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return judge.eval()


def ship_judge(labels: str, *, out_dir: Path | None = None, steps: int = 800, seed: int = 0):
    """Train, measure the ceiling on the test split, write judge-<labels>.safetensors + card."""
    train, test, size = judge_data(labels)
    start = time.perf_counter()
    judge = train_judge(train, size=size, steps=steps, seed=seed)
    seconds = time.perf_counter() - start
    ceiling = judge_ceiling(judge, test.images, test.labels)  # (K,)
    train_acc = judge_ceiling(judge, train.images, train.labels)
    test_count = torch.bincount(test.labels, minlength=train.num_classes)
    out_dir = Path(out_dir) if out_dir else pretrained_dir()
    meta = {
        "kind": "judge",
        "labels": labels,
        "config": asdict(judge.cfg),
        "class_names": list(train.class_names),
        "ceiling": [None if math.isnan(c) else c for c in ceiling.tolist()],
    }
    save_tensors(out_dir / f"judge-{labels}.safetensors", judge.state_dict(), meta)
    valid = ~ceiling.isnan()
    card = {
        "title": f"ldm-course recognisability judge ({labels} labels)",
        "data": f"Twemoji train split, {len(train)} images at {size} px; ceiling on the test split "
        f"({len(test)} images, unseen base emoji)",
        "recipe": f"python -m ldm_course.training.train_judge --labels {labels} "
        f"(steps {steps}, seed {seed}, one CPU thread)",
        "training_seconds": round(seconds),
        "parameters": sum(p.numel() for p in judge.parameters()),
        "mean_ceiling": round(ceiling[valid].mean().item(), 4),
        "test_accuracy": round(
            (judge.predict(test.images) == test.labels).double().mean().item(), 4
        ),
        "per_class": {
            name: {
                "test_images": int(test_count[c]),
                "ceiling": None if math.isnan(ceiling[c]) else round(ceiling[c].item(), 4),
                "train_accuracy": round(train_acc[c].item(), 4),
            }
            for c, name in enumerate(train.class_names)
        },
    }
    write_card(out_dir / f"judge-{labels}", card)
    return judge, card


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Train and ship a recognisability judge.")
    p.add_argument("--labels", choices=JUDGE_LABELS, default="category", help="which labels")
    p.add_argument("--steps", type=int, default=800, help="optimiser steps of 128 images")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--out-dir", type=Path, default=None, help="default: the package's assets")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    _, card = ship_judge(args.labels, out_dir=args.out_dir, steps=args.steps, seed=args.seed)
    print(
        f"mean ceiling {card['mean_ceiling']}, test accuracy {card['test_accuracy']}, "
        f"{card['training_seconds']} s"
    )


if __name__ == "__main__":
    main()
