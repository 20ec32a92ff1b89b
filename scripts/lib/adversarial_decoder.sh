# Sourced by scripts/release/train_shipped.sh (which ships the run at adversarial_weight 0.5) and
# scripts/experiments/experiments_adversarial.sh (which also trains 0.2 and the control at 0):
# the decoder-only fine-tune of the shipped VAE, encoder frozen, so every latent and both shipped
# U-Nets stay valid. Append --set adversarial_weight=W and give it to `train RUN_DIR`.
ADV_FT=(${CLI:-.venv/bin/ldm-course} train-vae --preset cpu-full
  --set init_from=ldm_course/assets/pretrained/vae.safetensors
  --set train_encoder=false --set freeze_encoder_at=0 --set steps=1800 --set lr=1e-4
  --set min_lr=2e-5 --set warmup_steps=50 --set perceptual_weight=0.1 --set adversarial_start=200)
