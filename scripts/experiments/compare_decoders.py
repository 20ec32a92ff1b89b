"""Reconstruction metrics of several VAEs on the whole Twemoji test split (posterior mean): PSNR,
SSIM, LPIPS with the AlexNet the decoders were trained with, and LPIPS with VGG, which none of them
saw (a fairer judge of the perceptual side). Used for the adversarial decoder
(docs/experiments/adversarial-decoder.md); the distances of samples decoded by each come from
`python scripts/experiments/compare_unets.py --vae`.

    python scripts/experiments/compare_decoders.py pretrained runs/vae-adv-0.2 runs/vae-adv-0 \\
        --out benchmarks/results/decoders.json
"""

import argparse
import json
from pathlib import Path

from ldm_course.data import twemoji
from ldm_course.infra.checkpoint import atomic_write
from ldm_course.perceptual import LPIPS
from ldm_course.pretrained import load_vae
from ldm_course.training.evaluate import vae_metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("vaes", nargs="+", help="'pretrained' or VAE run folders / .safetensors files")
    p.add_argument("--out", default="benchmarks/results/decoders.json")
    args = p.parse_args()
    test = twemoji("test")
    alex, vgg = LPIPS("alex", "stlpips"), LPIPS("vgg", "stlpips")
    rows = []
    for source in args.vaes:
        vae = load_vae(None if source == "pretrained" else source)
        row = {"vae": source, **vae_metrics(vae, test.images, alex)}
        row["lpips_vgg_stlpips"] = vae_metrics(vae, test.images, vgg)["lpips_alex_stlpips"]
        rows.append(row)
        print(
            f"{source}: PSNR {row['psnr_db']:.2f} dB, SSIM {row['ssim']:.4f}, LPIPS alex "
            f"{row['lpips_alex_stlpips']:.4f}, vgg {row['lpips_vgg_stlpips']:.4f}",
            flush=True,
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    report = json.dumps({"test_images": len(test), "rows": rows}, indent=2) + "\n"
    atomic_write(Path(args.out), lambda p: p.write_text(report))


if __name__ == "__main__":
    main()
