"""Does a higher VAE KL weight keep guided samples diverse? Live chains on faces and flags.

For each KL weight, train the live chain of notebook 05 (ldm_course.course.live: a VAE at 32x32, f = 4,
then the live U-Net on its latents), sample PER_CLASS faces and PER_CLASS flags at several guidance
scales from the same noise, and measure diversity as in notebook 05's guidance sweep: the mean
LPIPS (AlexNet, shift-tolerant weights) over all pairs of samples of one class. The same measure on
PER_CLASS real training images of each class is the data's own diversity. Also reported per chain:
the VAE's L1 reconstruction error on the test faces and flags, the scale factor, and the Fréchet
distance of the w = 3 samples to the real images (with its real-vs-real floor), so that a change in
diversity can be told apart from a change in quality.

    .venv/bin/python scripts/experiments/mode_dropping.py --kl 1e-6 1e-4 1e-2 --out /tmp/mode_dropping.json

About 3 minutes per KL weight on one CPU thread (the live recipes); results are written as JSON.
"""

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from ldm_course.course.checks import reference_sampling_loop
from ldm_course.course.live import LIVE_CLASSES, live_ldm_config, live_subset, live_vae_config
from ldm_course.metrics import FeatureExtractor, frechet_distance
from ldm_course.perceptual import LPIPS
from ldm_course.training.train_ldm import train_ldm
from ldm_course.training.train_vae import train_vae


@torch.no_grad()
def diversity(lpips: LPIPS, images: torch.Tensor) -> float:
    """Mean LPIPS over all pairs of images (K, 3, H, W)."""
    i, j = torch.combinations(torch.arange(len(images))).T  # (K (K - 1) / 2,) each
    return lpips(images[i], images[j]).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kl", type=float, nargs="+", default=[1e-6, 1e-4, 1e-2])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0, 5.0])
    parser.add_argument("--per-class", type=int, default=24)
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    torch.set_num_threads(1)
    train = live_subset("train", size=live_vae_config().size)  # (347, 3, 32, 32); faces 0, flags 1
    test = live_subset("test", size=live_vae_config().size)
    lpips, features = LPIPS(), FeatureExtractor()
    pick = torch.Generator().manual_seed(0)
    real = {}
    for k, name in enumerate(LIVE_CLASSES):
        pool = (train.labels == k).nonzero().flatten()
        real[name] = train.images[pool[torch.randperm(len(pool), generator=pick)[: args.per_class]]]
    real_div = {name: diversity(lpips, images) for name, images in real.items()}
    print("real images: " + ", ".join(f"{n} {d:.3f}" for n, d in real_div.items()), flush=True)

    # the Fréchet distance of notebook 05: half the real images as reference, the other half as floor
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    n_half = len(train) // 2
    half_a, half_b = order[:n_half], order[n_half : 2 * n_half]
    reference = features.batched(train.images[half_a])
    floor = frechet_distance(reference, features.batched(train.images[half_b]))
    print(f"Frechet floor (real vs real, {n_half} images each): {floor:.3f}", flush=True)

    y = torch.arange(len(LIVE_CLASSES)).repeat_interleave(args.per_class)  # (2K,)
    z_T = torch.randn((len(y), 4, 8, 8), generator=torch.Generator().manual_seed(1))
    z_T_fd = torch.randn((n_half, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    rows = []
    for kl in args.kl:
        with tempfile.TemporaryDirectory(prefix="mode-dropping-") as tmp:
            start = time.perf_counter()
            vae_cfg = replace(live_vae_config(), kl_weight=kl)
            vae, _ = train_vae(vae_cfg, Path(tmp) / "vae", data=train, progress=False)
            vae_s = time.perf_counter() - start
            with torch.no_grad():
                recon = vae.decode(vae.encode(test.images).mode()).clamp(-1, 1)
            l1 = (recon - test.images).abs().mean().item() / 2  # on the [0, 1] scale
            start = time.perf_counter()
            ldm, _ = train_ldm(
                live_ldm_config(), Path(tmp) / "ldm", vae, data=train, progress=False
            )
            unet_s = time.perf_counter() - start
        row = {
            "kl_weight": kl,
            "vae_s": vae_s,
            "unet_s": unet_s,
            "test_l1": l1,
            "scale_factor": ldm.scale_factor,
            "diversity": {},
        }
        for w in args.guidance:
            images = reference_sampling_loop(ldm, y, z_T, steps=args.steps, guidance_scale=w)
            row["diversity"][w] = {
                name: diversity(lpips, group)
                for name, group in zip(LIVE_CLASSES, images.split(args.per_class), strict=True)
            }
        samples = reference_sampling_loop(
            ldm, train.labels[half_a], z_T_fd, steps=args.steps, guidance_scale=3.0
        )
        row["fd_w3"] = frechet_distance(reference, features.batched(samples))
        rows.append(row)
        print(
            f"KL {kl:g}: VAE {vae_s:.0f} s, U-Net {unet_s:.0f} s, test L1 {l1:.4f}, "
            f"s = {ldm.scale_factor:.3f}, FD at w = 3 {row['fd_w3']:.3f}; diversity "
            + "; ".join(
                f"w = {w:g}: " + ", ".join(f"{n} {d:.3f}" for n, d in div.items())
                for w, div in row["diversity"].items()
            ),
            flush=True,
        )
    result = {
        "how": "scripts/experiments/mode_dropping.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out"
        ),
        "per_class": args.per_class,
        "real_diversity": real_div,
        "fd_floor": floor,
        "fd_images": n_half,
        "chains": rows,
        "ldm_steps": live_ldm_config().steps,
        "vae_steps": live_vae_config().steps,
        "torch": torch.__version__,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
