"""Benchmark 4: sample quality against the number of denoising steps. DDIM (Song et al. 2021) at a
few step counts and ancestral DDPM (Ho et al. 2020) at all T steps, each from the same seed and the
same class labels; quality is a distance between the samples and reference images (the course uses
a Frechet distance in FeatureExtractor space, see metrics.py), with the wall time of sampling.
"""

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from ldm_course.config import UNetConfig, VAEConfig
from ldm_course.diffusion import LatentDiffusion
from ldm_course.infra.checkpoint import atomic_write
from ldm_course.metrics import frechet_distance
from ldm_course.schedules import make_schedule
from ldm_course.unet import UNet
from ldm_course.vae import VAE

Sampler = Literal["ddim", "ddpm"]
DistanceFn = Callable[[torch.Tensor, torch.Tensor], float]  # (images_a, images_b) -> distance
DDIM_STEPS = (10, 20, 50, 100)


def default_settings(num_steps: int, *, ddpm: bool = True) -> list[tuple[Sampler, int]]:
    """DDIM at DDIM_STEPS and, unless ddpm=False, ancestral DDPM at all T = num_steps steps."""
    return [("ddim", n) for n in DDIM_STEPS] + ([("ddpm", num_steps)] if ddpm else [])


def pooled_pixel_frechet(images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """A cheap stand-in distance: Frechet distance between Gaussians fitted to 4x4 average-pooled
    pixels (48 values per image). No network, so it suits smoke tests; it sees colour layout only."""
    feats_a = F.adaptive_avg_pool2d(images_a, 4).flatten(1)  # (N, 3, H, W) -> (N, 48)
    feats_b = F.adaptive_avg_pool2d(images_b, 4).flatten(1)  # (N, 3, H, W) -> (N, 48)
    return frechet_distance(feats_a, feats_b)


def feature_frechet() -> DistanceFn:
    """The course's sample-quality distance: Frechet distance in FeatureExtractor space (an
    offline, ImageNet-trained AlexNet; see metrics.py). Loads the network once."""
    from ldm_course.metrics import FeatureExtractor

    features = FeatureExtractor()

    def distance(images_a: torch.Tensor, images_b: torch.Tensor) -> float:
        device = next(features.parameters()).device
        return frechet_distance(
            features.batched(images_a.to(device)), features.batched(images_b.to(device))
        )

    return distance


def quality_vs_steps(
    ldm: LatentDiffusion,
    references: torch.Tensor,
    distance_fn: DistanceFn,
    *,
    settings: Sequence[tuple[Sampler, int]] | None = None,
    labels: torch.Tensor | None = None,
    guidance_scale: float = 3.0,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """One row per (sampler, steps): distance(samples, references) and the seconds sampling took.

    references: (N, 3, H, W) in [-1, 1]; N samples are drawn, so both sets have the same size.
    labels: (N,) class ids for a class-conditional model (e.g. the references' own labels), else
    None (the unconditional model). Every setting starts from the same z_T (seed + batch offset),
    so the rows differ only in the sampler. DDPM always runs all T = ldm.schedule.num_steps steps.
    settings defaults to default_settings(T).
    """
    settings = default_settings(ldm.schedule.num_steps) if settings is None else settings
    for sampler, steps in settings:
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        if sampler == "ddpm" and steps != ldm.schedule.num_steps:
            raise ValueError(
                f"DDPM runs all {ldm.schedule.num_steps} steps of the schedule, got steps={steps}"
            )
    if labels is not None and labels.shape != (len(references),):
        raise ValueError(f"labels must be ({len(references)},), got {tuple(labels.shape)}")
    rows = []
    for sampler, steps in settings:
        start = time.perf_counter()
        images = []
        for i in range(0, len(references), batch_size):
            y = None if labels is None else labels[i : i + batch_size]
            n = min(batch_size, len(references) - i)
            gen = torch.Generator().manual_seed(seed + i)  # the same z_T per batch in every row
            images.append(
                ldm.generate(
                    n,
                    steps=steps,
                    sampler=sampler,
                    y=y,
                    generator=gen,
                    guidance_scale=guidance_scale,
                    progress=False,
                ).cpu()
            )
        seconds = time.perf_counter() - start
        samples = torch.cat(images)  # (N, 3, H, W)
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "distance": distance_fn(samples, references),
                "seconds": seconds,
                "seconds_per_image": seconds / len(references),
            }
        )
    return {
        "tables": {"quality versus steps": rows},
        "settings": {
            "num_images": len(references),
            "guidance_scale": guidance_scale,
            "conditional": labels is not None,
            "batch_size": batch_size,
            "seed": seed,
        },
    }


def tiny_ldm(*, seed: int = 0) -> LatentDiffusion:
    """A random 16x16 model (2x2 latents, T = 20) for smoke tests: seconds for every sampler."""
    with torch.random.fork_rng(devices=[]):  # modules initialise from the global generator
        torch.manual_seed(seed)
        vae = VAE(VAEConfig(base_channels=8, channel_mult=(1, 1, 1, 1)))  # f = 8: 16 -> 2
        unet = UNet(UNetConfig(base_channels=16, channel_mult=(1,), attention_levels=(0,)))
    return LatentDiffusion(vae, unet, make_schedule("linear", 20), 1.0, image_size=16).eval()


def plot_quality(rows: list[dict], path: str | Path, *, distance_name: str) -> Path:
    """Distance against sampling time (log axis), one labelled point per setting; saved as PNG."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for sampler, marker in (("ddim", "o-"), ("ddpm", "s")):
        pts = [r for r in rows if r["sampler"] == sampler]
        if pts:
            ax.plot(
                [r["seconds_per_image"] for r in pts],
                [r["distance"] for r in pts],
                marker,
                label=sampler.upper(),
            )
        for r in pts:
            ax.annotate(
                f"{r['steps']}",
                (r["seconds_per_image"], r["distance"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (log)")
    ax.set_ylabel(distance_name)
    ax.set_title("sample quality versus denoising steps")
    ax.legend()
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
    return path
