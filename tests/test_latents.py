import math

import pytest
import torch

from ldm_course.config import VAEConfig
from ldm_course.latents import (
    SD_SCALE_FACTOR,
    decode_latents,
    encode_images,
    estimate_scale_factor,
    latent_stats,
    slerp,
)
from ldm_course.vae import VAE


@pytest.mark.parametrize("std", [0.2, 1.0, 5.5])
def test_scale_factor_gives_unit_variance_on_data_of_known_std(std):
    gen = torch.Generator().manual_seed(0)
    z = (
        std * torch.randn(512, 4, 8, 8, generator=gen)
        + torch.tensor([0.5, -1.0, 0.0, 2.0]).view(1, 4, 1, 1) * 0.1
    )
    factor = estimate_scale_factor(z)
    offsets = torch.tensor([0.05, -0.1, 0.0, 0.2])
    total_std = math.sqrt(
        std**2 + offsets.var(unbiased=False).item()
    )  # within- plus between-channel spread
    assert factor == pytest.approx(1 / total_std, rel=0.01)
    assert latent_stats(z * factor).std == pytest.approx(1.0, rel=1e-6)  # float32 latents


def test_latent_stats_per_channel():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(400, 3, 4, 4, generator=gen) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    stats = latent_stats(z)
    torch.testing.assert_close(stats.channel_std, torch.tensor([1.0, 2.0, 3.0]), rtol=0.05, atol=0)
    assert stats.count == 400 and abs(stats.mean) < 0.05


def test_scale_factor_through_a_vae_matches_encoding_by_hand(emoji_batch):
    torch.manual_seed(0)
    vae = VAE(VAEConfig(base_channels=8, norm_groups=4)).eval()
    gen = torch.Generator().manual_seed(3)
    factor = estimate_scale_factor(emoji_batch, vae, sample=False, batch_size=5)
    with torch.no_grad():
        by_hand = vae.encode(emoji_batch).mean
    assert factor == pytest.approx(1 / by_hand.double().std().item(), rel=1e-5)
    z = encode_images(vae, emoji_batch, sample=True, generator=gen, scale_factor=factor)
    assert z.shape == (16, 4, 8, 8)
    assert decode_latents(vae, z, scale_factor=factor).shape == emoji_batch.shape


def test_sd_constant_is_for_comparison_only():
    assert SD_SCALE_FACTOR == 0.18215


def test_scale_factor_errors():
    with pytest.raises(ValueError, match="std 0"):
        estimate_scale_factor(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="must be a tensor of latents"):
        estimate_scale_factor([torch.zeros(1)])


def test_slerp_endpoints_norm_and_angle():
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    torch.testing.assert_close(slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(slerp(z0, z1, 1.0), z1, atol=1e-5, rtol=1e-5)
    # for unit vectors the interpolant stays on the sphere and the angle splits in proportion
    u0, u1 = (
        z0 / z0.flatten(1).norm(dim=1).view(-1, 1, 1, 1),
        z1 / z1.flatten(1).norm(dim=1).view(-1, 1, 1, 1),
    )
    mid = slerp(u0, u1, 0.3)
    torch.testing.assert_close(mid.flatten(1).norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    angle = lambda a, b: torch.arccos((a.flatten(1) * b.flatten(1)).sum(1).clamp(-1, 1))  # noqa: E731
    torch.testing.assert_close(angle(u0, mid), 0.3 * angle(u0, u1), atol=1e-4, rtol=0)
    torch.testing.assert_close(slerp(z0, z0, 0.5), z0)  # parallel: no division by zero
