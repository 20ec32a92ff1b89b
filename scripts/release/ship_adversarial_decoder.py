"""Ship a decoder-only adversarial fine-tune of the shipped VAE as vae-adversarial.safetensors
(fp16) with its model card, after checking that its encoder is the shipped encoder tensor by
tensor (so the latents, the scale factor and both shipped U-Nets stay valid).

    python scripts/release/ship_adversarial_decoder.py runs/vae-adv-0.5 \\
        --decoders benchmarks/results/decoders.json \\
        --samples benchmarks/results/decoders_samples_{lpips,0,0.2,0.5}.json

--decoders: scripts/experiments/compare_decoders.py's JSON (reconstruction metrics of each VAE);
--samples: scripts/experiments/compare_unets.py --vae JSONs (distances of samples decoded by each VAE).
"""

import argparse
import json
from pathlib import Path

import torch
from ship_checkpoints import hardware, run_summary, write_shipped_card

from ldm_course.infra.checkpoint import load_tensors
from ldm_course.pretrained import SHIPPED_VAES, export, shipped_vae_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="the decoder-only train-vae run to ship")
    p.add_argument("--decoders", type=Path, required=True)
    p.add_argument("--samples", type=Path, nargs="+", required=True)
    p.add_argument("--notes", default="")
    args = p.parse_args()
    name = SHIPPED_VAES["adversarial"]
    export(args.run, name)
    base, _ = load_tensors(shipped_vae_file("lpips"))
    mine, _ = load_tensors(shipped_vae_file("adversarial"))
    encoder = [k for k in base if k.startswith("encoder.")]
    if not encoder or any(not torch.equal(base[k], mine[k]) for k in encoder):
        raise SystemExit(
            f"{args.run}'s encoder is not the shipped encoder: train it with "
            "--set init_from=<the shipped VAE> --set train_encoder=false"
        )
    samples = [json.loads(path.read_text()) for path in args.samples]
    write_shipped_card(
        args.run,
        name,
        {
            "title": "ldm-course VAE with an adversarial decoder (f=8, 4 latent channels; "
            "L1 + LPIPS + PatchGAN + KL; the encoder of vae.safetensors)",
            "data": "Twemoji 16.0 (emoji-datasource-twitter@16.0.0), 64x64 on white, train split "
            "(3,388 images); metrics on the held-out test split (398 images, unseen base emoji). "
            "CC-BY 4.0, Twitter, Inc. and contributors.",
            "hardware": hardware(),
            "recipe": "docs/experiments/adversarial-decoder.md (scripts/release/train_shipped.sh, step 8)",
            "encoder": f"identical to {SHIPPED_VAES['lpips']}.safetensors "
            f"({len(encoder)} tensors checked)",
            **run_summary(args.run),
            "metrics_test_split": json.loads(args.decoders.read_text())["rows"],
            "decoded_samples": [{"vae": s["vae"], "summary": s["summary"]} for s in samples],
            "notes": args.notes,
        },
    )
    print(f"shipped {name}.safetensors and its card")


if __name__ == "__main__":
    main()
