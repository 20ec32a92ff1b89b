"""Tiny runs for the run-folder and bad-input tests: random 32x32 data, models of a few thousand
weights, two steps; each trains in about a second."""

from pathlib import Path

from helpers import tiny_data as shared_tiny_data

from ldm_course.config import LDMTrainConfig, UNetConfig, VAEConfig, VAETrainConfig
from ldm_course.data import TensorImageDataset
from ldm_course.training.train_ldm import train_ldm
from ldm_course.training.train_vae import train_vae

SMALL = {"size": 32, "batch_size": 4, "log_every": 1, "sample_every": 0, "warmup_steps": 1}
TINY_VAE = VAETrainConfig(
    steps=2,
    checkpoint_every=0,
    perceptual_weight=0.0,
    vae=VAEConfig(base_channels=4, norm_groups=4),
    **SMALL,
)
TINY_LDM = LDMTrainConfig(
    steps=2,
    checkpoint_every=0,
    unet=UNetConfig(base_channels=16, num_res_blocks=1, attention_levels=(1,)),
    **SMALL,
)


def tiny_data(seed: int = 0, n: int = 8) -> TensorImageDataset:
    """n random 32x32 images of `seed`, classes a, b alternating (helpers.tiny_data)."""
    return shared_tiny_data(n, seed=seed)


def vae_run(run: Path, cfg: VAETrainConfig = TINY_VAE, **kwargs):
    kwargs.setdefault("data", tiny_data())
    return train_vae(cfg, run, progress=False, **kwargs)


def ldm_run(run: Path, vae, cfg: LDMTrainConfig = TINY_LDM, **kwargs):
    kwargs.setdefault("data", tiny_data())
    return train_ldm(cfg, run, vae, progress=False, **kwargs)
