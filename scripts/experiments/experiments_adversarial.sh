#!/usr/bin/env bash
# The adversarial decoder (docs/experiments/adversarial-decoder.md): the shipped VAE's decoder fine-tuned
# for 1800 more steps with the PatchGAN term at adversarial_weight 0.5 (LDM's value) and 0.2, and
# the control without it (0: the same steps, batches and noise, no discriminator), all three with
# the encoder frozen, so every latent and both shipped U-Nets stay valid. Then reconstruction
# metrics of the four decoders and the distances of the same U-Net samples decoded by each.
# About 40 minutes per run on one CPU thread, two at a time; the comparisons another 30 minutes.
# Rerunning resumes or skips finished runs. Run 0.5 is the recipe scripts/release/train_shipped.sh ships
# as vae-adversarial; its model card reads the comparisons this script writes to benchmarks/results/.
set -euo pipefail
CLI=${CLI:-.venv/bin/ldm-course}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
source "$(dirname "$0")/../lib/train_or_resume.sh"  # train RUN_DIR COMMAND...: resume or skip when done
source "$(dirname "$0")/../lib/adversarial_decoder.sh"  # ADV_FT: the decoder-only fine-tune
train runs/vae-adv-0.5 "${ADV_FT[@]}" --set adversarial_weight=0.5 &
train runs/vae-adv-0.2 "${ADV_FT[@]}" --set adversarial_weight=0.2 &
wait
train runs/vae-adv-0 "${ADV_FT[@]}" --set adversarial_weight=0
$PY scripts/experiments/compare_decoders.py pretrained runs/vae-adv-0 runs/vae-adv-0.2 runs/vae-adv-0.5 \
  --out benchmarks/results/decoders.json
# the shipped U-Net's samples (one per test image, DDIM 50, guidance 1 and 3, seeds 0 and 1: the
# same latents for every decoder) through each decoder
samples() {  # out-name, compare_unets options...
  local name=$1; shift
  $PY scripts/experiments/compare_unets.py ldm_course/assets/pretrained/unet.safetensors "$@" \
    --guidance 1 3 --seeds 0 1 --out "benchmarks/results/$name.json" --grids "runs/grids-$name"
}
samples decoders_samples_lpips &
samples decoders_samples_0 --vae runs/vae-adv-0/model.safetensors &
wait
samples decoders_samples_0.2 --vae runs/vae-adv-0.2/model.safetensors &
samples decoders_samples_0.5 --vae runs/vae-adv-0.5/model.safetensors &
wait
