"""Ship the L1-only VAE (run 3 of scripts/release/train_shipped.sh: the cpu-full preset with
perceptual_weight=0) as vae-l1.safetensors (fp16) with its model card, for notebook 02's comparison
of the two full-budget VAEs. Evaluates the shipped file and, for comparison, the shipped default VAE
(L1 + LPIPS) on the held-out test split with `ldm_course.training.evaluate.vae_metrics`.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/release/ship_l1_vae.py runs/vae-l1 \\
        --command "ldm-course train-vae --preset cpu-full --set perceptual_weight=0"
"""

import argparse
from pathlib import Path

from ship_checkpoints import hardware, run_summary, write_shipped_card

from ldm_course.data import twemoji
from ldm_course.perceptual import LPIPS
from ldm_course.pretrained import SHIPPED_VAE_WITHOUT_LPIPS, export, load_vae
from ldm_course.training.evaluate import vae_metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the finished train-vae run (perceptual_weight=0)")
    p.add_argument("--command", required=True, help="the command that trained it, for the card")
    p.add_argument("--notes", default="")
    args = p.parse_args()
    summary = run_summary(args.run)
    if summary["run_config"].get("perceptual_weight") != 0:
        raise SystemExit(f"{args.run} was trained with a perceptual term: not the L1-only VAE")
    name = SHIPPED_VAE_WITHOUT_LPIPS
    export(args.run, name)

    test = twemoji("test").images
    lpips = LPIPS("alex", "stlpips")
    metrics = {
        name: vae_metrics(load_vae(perceptual=False), test, lpips),
        "vae (the shipped default, L1 + LPIPS, for comparison)": vae_metrics(
            load_vae(), test, lpips
        ),
    }
    for source, m in metrics.items():
        print(
            f"{source}: PSNR {m['psnr_db']:.4f} dB, SSIM {m['ssim']:.5f}, "
            f"LPIPS {m['lpips_alex_stlpips']:.5f} ({m['images']} test images)"
        )
    write_shipped_card(
        args.run,
        name,
        {
            "title": "ldm-course VAE without LPIPS (f=8, 4 latent channels, L1 + KL only)",
            "data": "Twemoji 16.0 (emoji-datasource-twitter@16.0.0), 64x64 on white, train split "
            "(3,388 images); metrics on the held-out test split (398 images, unseen base emoji). "
            "CC-BY 4.0, Twitter, Inc. and contributors.",
            "hardware": hardware(),
            "recipe": f"{args.command} (run 3 of scripts/release/train_shipped.sh), then "
            "scripts/release/ship_l1_vae.py",
            "use": "ldm_course.pretrained.load_vae(perceptual=False): the comparison of notebook "
            "02, section 4. Its encoder is its own, not the shipped VAE's: no U-Net was trained on "
            "its latents.",
            **summary,
            "metrics_test_split": metrics,
            "metrics_how": "ldm_course.training.evaluate.vae_metrics: reconstructions from the posterior "
            "mean, clamped to [-1, 1]; PSNR and SSIM (ldm_course.metrics), LPIPS AlexNet with the "
            "shift-tolerant weights (stlpips); the fp16 files as loaded (float32), one CPU thread",
            "notes": args.notes,
        },
    )
    print(f"shipped {name}.safetensors and its card")


if __name__ == "__main__":
    main()
