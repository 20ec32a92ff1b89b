"""`ldm-course evaluate`: the numbers of the model cards, all on the held-out Twemoji test split.

- VAE: PSNR, SSIM, LPIPS of reconstructions from the posterior mean (optionally a second VAE).
- Latents: std of scaled latents (should be ~1), per-channel means and stds.
- Samples: Frechet distance to the test split in FeatureExtractor space (see metrics.py) for DDIM-50
  at guidance 1, 3, 5 and DDPM-1000, beside the floor (VAE reconstructions of the test split) and
  the ceiling (decoded pure-noise latents), all on num_samples images; DDPM-1000 (20x the cost)
  runs on a smaller subset beside DDIM-50 on the same subset, since the distance depends on N.
- Recognisability: for each DDIM-50 setting on num_samples images, the fraction of samples the
  shipped judge of the model's labels (ldm_course.judge) assigns to the conditioning class, per
  class, over the judge's accuracy on the real test images of that class (its ceiling), averaged
  over classes; beside it the score of samples that ignore their label (chance).
- Copies: for 64 samples, the nearest training image and its RMSE.
"""

import json
import time
from pathlib import Path

import torch

from ldm_course.data import resize, twemoji, twemoji_labels_of
from ldm_course.infra.checkpoint import atomic_write
from ldm_course.judge import load_judge, recognisability
from ldm_course.latents import encode_images, latent_stats
from ldm_course.metrics import FeatureExtractor, frechet_distance, nearest_neighbours, psnr, ssim
from ldm_course.perceptual import LPIPS
from ldm_course.pretrained import load_ldm, load_vae

NEAR_DUPLICATE_RMSE = (
    0.05  # RMSE on [0, 1] below which a sample counts as a near copy (PSNR > 26 dB)
)


@torch.no_grad()
def vae_metrics(vae, images: torch.Tensor, lpips: LPIPS, *, batch_size: int = 128) -> dict:
    """Mean PSNR / SSIM / LPIPS of D(mean of q(z|x)) against x, images (N, 3, H, W)."""
    recon = torch.cat(
        [vae.decode(vae.encode(x).mode()).clamp(-1, 1) for x in images.split(batch_size)]
    )
    return {
        "psnr_db": psnr(images, recon).mean().item(),
        "ssim": ssim(images, recon).mean().item(),
        "lpips_alex_stlpips": torch.cat(
            [
                lpips(a, b)
                for a, b in zip(images.split(batch_size), recon.split(batch_size), strict=True)
            ]
        )
        .mean()
        .item(),
        "images": len(images),
    }


def evaluate(
    *,
    vae_path=None,
    unet_path=None,
    compare_vae=None,
    out: str | Path = "evaluation.json",
    num_samples: int = 256,
    ddpm: bool = True,
    ddpm_samples: int = 64,
    device="cpu",
    seed: int = 0,
    steps: int = 50,
) -> str:
    """Compute everything in the module docstring; write JSON to `out`; return a printable table.

    num_samples above the test split's size uses the whole split; the report records (and the
    table prints) the numbers used, beside the ones asked for."""
    check_counts(num_samples=num_samples, ddpm_samples=ddpm_samples, steps=steps)
    check_out(Path(out))
    ldm = load_ldm(unet_path, vae_path, device=device)
    # samples are conditioned on the test images' labels in the model's own label space
    labels = twemoji_labels_of(ldm.class_names)
    test = twemoji("test", labels=labels)
    judge = shipped_judge(labels, ldm.class_names)
    train = twemoji("train")
    lpips = LPIPS("alex", "stlpips").to(device)
    features = FeatureExtractor(lpips)
    used = min(num_samples, len(test))  # a Frechet distance per setting on `used` images
    report: dict = {
        "test_images": len(test),
        "num_samples": used,
        "num_samples_requested": num_samples,
        "seed": seed,
        "feature_space": "shift-tolerant AlexNet (stlpips-pytorch), 5 ReLU layers avg-pooled, 1152-d",
    }

    report["vae"] = vae_metrics(ldm.vae, test.images.to(device), lpips)
    report["vae_compare"] = [
        {
            "source": str(path),
            **vae_metrics(load_vae(path, device=device), test.images.to(device), lpips),
        }
        for path in compare_vae or []
    ]

    z = encode_images(
        ldm.vae,
        test.images.to(device),
        generator=torch.Generator(device).manual_seed(seed),
        scale_factor=ldm.scale_factor,
    )
    stats = latent_stats(z)
    report["latents"] = {
        "scale_factor": ldm.scale_factor,
        "scaled_std": stats.std,
        "scaled_mean": stats.mean,
        "channel_mean": stats.channel_mean.tolist(),
        "channel_std": stats.channel_std.tolist(),
    }

    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(test), generator=gen)[:used]
    real = test.images[pick]
    y = test.labels[pick].to(device)  # the test split's label mix
    real_feats = features.batched(real.to(device))
    fd = {}
    recon = torch.cat(
        [ldm.vae.decode(ldm.vae.encode(x.to(device)).mode()).clamp(-1, 1) for x in real.split(128)]
    )
    fd["floor: VAE reconstructions of the test split"] = (
        frechet_distance(real_feats, features.batched(recon)),
        0.0,
    )
    h = ldm.image_size // ldm.vae.downsample_factor
    noise = torch.randn((len(real), ldm.vae.cfg.latent_channels, h, h), generator=gen).to(device)
    fd["ceiling: decoded pure-noise latents"] = (
        frechet_distance(real_feats, features.batched(ldm.decode(noise).clamp(-1, 1))),
        0.0,
    )
    # (sampler, steps, guidance, images). DDPM's 1000 steps are 20x DDIM-50's cost: on a CPU it runs
    # on a subset, beside DDIM-50 on the same subset, since a Frechet distance depends on N.
    n_small = min(ddpm_samples, len(real))
    settings = [("ddim", steps, w, len(real)) for w in (1.0, 3.0, 5.0)]
    if ddpm:
        settings += [("ddim", steps, 3.0, n_small), ("ddpm", ldm.schedule.num_steps, 3.0, n_small)]
    report["ddpm_samples"] = n_small if ddpm else 0
    samples_for_nn = None
    report["recognisability"] = {}
    if judge is None:
        report["recognisability_note"] = (
            f"no shipped judge for an {'unconditional' if not ldm.class_names else labels} model"
        )
    for sampler, n_steps, w, n in settings:
        start = time.perf_counter()
        images = ldm.generate(
            n,
            steps=n_steps,
            guidance_scale=w,
            y=y[:n],
            sampler=sampler,
            progress=True,
            generator=torch.Generator().manual_seed(seed),
        )
        seconds = time.perf_counter() - start
        fd[f"{sampler.upper()} {n_steps} steps, guidance {w:g}, {n} images"] = (
            frechet_distance(real_feats[:n], features.batched(images)),
            seconds,
        )
        if judge is not None and n == len(real):
            model, ceiling, names = judge
            score = recognisability(
                model, resize(images.cpu(), model.cfg.size), y[:n].cpu(), ceiling, class_names=names
            )
            report["recognisability"][f"{sampler.upper()} {n_steps} steps, guidance {w:g}"] = (
                score.as_dict()
            )
        if sampler == "ddim" and w == 3.0 and samples_for_nn is None:
            samples_for_nn = images[:64].cpu()
    report["frechet_distance"] = {k: {"fd": v[0], "seconds": v[1]} for k, v in fd.items()}

    idx, rmse = nearest_neighbours(samples_for_nn, train.images)
    test_idx, test_rmse = nearest_neighbours(test.images[:256], train.images)
    report["nearest_training_image"] = {
        "samples": [
            {"train_index": int(i), "name": train.names[i], "rmse": float(d)}
            for i, d in zip(idx, rmse, strict=True)
        ],
        "near_duplicates": int((rmse < NEAR_DUPLICATE_RMSE).sum()),
        "threshold_rmse": NEAR_DUPLICATE_RMSE,
        "median_rmse_samples": rmse.median().item(),
        "median_rmse_test_images": test_rmse.median().item(),
        "test_images_under_threshold": int((test_rmse < NEAR_DUPLICATE_RMSE).sum()),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out), lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    return format_report(report)


def shipped_judge(labels: str, class_names: tuple[str, ...]):
    """(judge, ceiling, class names) of the shipped judge for a model with these class names, or
    None where there is none (an unconditional model, or labels no judge was shipped for)."""
    if not class_names:
        return None
    try:
        judge = load_judge(labels)
    except FileNotFoundError:
        return None
    if tuple(judge[2]) != tuple(class_names):
        raise ValueError(
            f"the shipped {labels} judge knows {len(judge[2])} classes, the model "
            f"{len(class_names)}: retrain the judge (python -m ldm_course.training.train_judge "
            f"--labels {labels})"
        )
    return judge


def check_out(out: Path) -> None:
    """The report's path: a .json file in a folder that can be written, checked before any work."""
    from ldm_course.infra.run_folder import check_writable

    if out.suffix.lower() != ".json" or out.is_dir():
        raise ValueError(f"out={str(out)!r}: the report is JSON; give a file name ending in .json")
    check_writable(out.parent, f"out={str(out)!r}")


def check_counts(*, num_samples: int, ddpm_samples: int, steps: int) -> None:
    """Refused before any work: a Frechet distance needs a covariance, so at least 2 images per
    set; DDIM at least 1 step."""
    why = " (a Frechet distance needs the covariance of at least 2 images)"
    for name, value, low in (
        ("num_samples", num_samples, 2),
        ("ddpm_samples", ddpm_samples, 2),
        ("steps", steps, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(
                f"{name}={value!r} must be a whole number >= {low}{why if low == 2 else ''}; "
                f"use --{name.replace('_', '-')} {low} or more"
            )


def format_report(r: dict) -> str:
    lines = [
        f"VAE on {r['vae']['images']} test images: PSNR {r['vae']['psnr_db']:.2f} dB, "
        f"SSIM {r['vae']['ssim']:.3f}, LPIPS {r['vae']['lpips_alex_stlpips']:.4f}"
    ]
    for c in r["vae_compare"]:
        lines.append(
            f"  vs {c['source']}: PSNR {c['psnr_db']:.2f} dB, SSIM {c['ssim']:.3f}, LPIPS {c['lpips_alex_stlpips']:.4f}"
        )
    lat = r["latents"]
    lines.append(
        f"scale factor {lat['scale_factor']:.4f}; scaled test latents std {lat['scaled_std']:.3f}, "
        f"channel stds {[round(s, 3) for s in lat['channel_std']]}"
    )
    asked = r.get("num_samples_requested", r["num_samples"])
    if asked != r["num_samples"]:
        lines.append(
            f"num_samples {asked} asked for; the test split has {r['test_images']} images, "
            f"so {r['num_samples']} are used"
        )
    lines.append(f"Frechet distance ({r['num_samples']} images each; {r['feature_space']}):")
    for k, v in r["frechet_distance"].items():
        lines.append(f"  {k:48s} {v['fd']:10.3f}   {v['seconds']:7.1f} s")
    if r.get("recognisability"):
        lines.append("recognisability (samples the judge assigns to their class / its ceiling):")
        for k, v in r["recognisability"].items():
            ratios = [  # the classes scored: a ceiling > 0 and samples (NaN fails both tests)
                (d["hit"] / d["ceiling"], name)
                for name, d in v["per_class"].items()
                if d["ceiling"] > 0 and d["hit"] >= 0
            ]
            worst = sorted(ratios)[:2]
            lowest = ", ".join(f"{name} {x:.2f}" for x, name in worst)
            lines.append(
                f"  {k:48s} {v['score']:10.3f}   (chance {v['chance']:.2f}; lowest: {lowest})"
            )
    elif r.get("recognisability_note"):
        lines.append(f"recognisability: {r['recognisability_note']}")
    nn = r["nearest_training_image"]
    lines.append(
        f"near duplicates among 64 samples: {nn['near_duplicates']} (RMSE < {nn['threshold_rmse']}); "
        f"median nearest RMSE {nn['median_rmse_samples']:.3f} (test images: {nn['median_rmse_test_images']:.3f})"
    )
    return "\n".join(lines)
