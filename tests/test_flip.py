"""Horizontal-flip augmentation for the latent U-Net (LDMTrainConfig.flip): which latents it draws."""

import numpy as np
import pytest
import torch
from helpers import random_images

from ldm_course.config import LDMTrainConfig, UNetConfig, VAEConfig
from ldm_course.data import (
    TWEMOJI_NOT_MIRRORABLE,
    TensorImageDataset,
    load_twemoji_arrays,
    twemoji,
)
from ldm_course.training.train_ldm import train_ldm
from ldm_course.vae import VAE

N = 24


def images(symmetric: bool) -> torch.Tensor:
    """(N, 3, 32, 32) random images; symmetric: each equals its own mirror image exactly."""
    x = random_images(N, seed=1)
    if symmetric:
        x = torch.cat([x[..., :16], x[..., :16].flip(-1)], dim=-1)  # right half mirrors left half
        assert torch.equal(x, x.flip(-1))
    return x


def trained(tmp_path, name: str, data: TensorImageDataset, flip: bool) -> dict[str, torch.Tensor]:
    """EMA weights after 6 steps on `data` with the given flip setting (same seed, same VAE)."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(base_channels=4, norm_groups=4))  # random weights: not mirror-equivariant
    cfg = LDMTrainConfig(
        steps=6,
        batch_size=8,
        warmup_steps=1,
        size=32,
        flip=flip,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
        unet=UNetConfig(base_channels=8, num_res_blocks=1, attention_levels=(), norm_groups=4),
    )
    ldm, _ = train_ldm(cfg, tmp_path / name, vae, data=data, progress=False)
    return {k: v.clone() for k, v in ldm.unet.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_flip_changes_nothing_but_the_image_it_encodes(tmp_path):
    # mirror images equal to the images: flips must train exactly as no flips (same batches,
    # same noise: the coins are the last draw of each step)
    data = TensorImageDataset(images(symmetric=True), torch.zeros(N, dtype=torch.long))
    assert same(trained(tmp_path, "a", data, False), trained(tmp_path, "b", data, True))
    assert (tmp_path / "b" / "latents-mirrored.safetensors").exists()


def test_flip_trains_on_mirror_images_only_where_mirrorable(tmp_path):
    x, labels = images(symmetric=False), torch.zeros(N, dtype=torch.long)
    plain = trained(tmp_path, "plain", TensorImageDataset(x, labels), False)
    flipped = trained(tmp_path, "flipped", TensorImageDataset(x, labels), True)
    assert not same(plain, flipped)  # asymmetric images: the mirror latents differ
    never = TensorImageDataset(x, labels, mirrorable=torch.zeros(N, dtype=torch.bool))
    assert same(plain, trained(tmp_path, "never", never, True))


def test_mirrorable_must_be_one_bool_per_image():
    x, labels = images(symmetric=False), torch.zeros(N, dtype=torch.long)
    with pytest.raises(ValueError, match="mirrorable must be"):
        TensorImageDataset(x, labels, mirrorable=torch.ones(N))  # floats
    with pytest.raises(ValueError, match="mirrorable must be"):
        TensorImageDataset(x, labels, mirrorable=torch.ones(N - 1, dtype=torch.bool))


def test_twemoji_never_mirrors_letters_digits_and_flags():
    data = twemoji("all")
    arrays = load_twemoji_arrays(keys=("names", "subcategories"))
    sub = arrays["subcategories"].astype(str)
    assert set(TWEMOJI_NOT_MIRRORABLE) <= set(sub)  # every excluded name is a real subcategory
    expected = ~np.isin(sub, TWEMOJI_NOT_MIRRORABLE)
    assert data.mirrorable.tolist() == expected.tolist()
    mirrorable = dict(zip(data.names, data.mirrorable.tolist(), strict=True))
    assert not mirrorable["KEYCAP 1"] and not mirrorable["Japan Flag"]
    assert mirrorable["RED APPLE"] and mirrorable["GRINNING FACE"]
    assert 0.7 < data.mirrorable.float().mean() < 0.95  # most emoji may be mirrored
