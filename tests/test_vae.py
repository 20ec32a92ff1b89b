import pytest
import torch
from helpers import copy_into_diffusers, optimise, param_modules, randomise
from torch.distributions import Normal, kl_divergence

from ldm_course.bench.against_diffusers import TINY_DIFFUSERS, diffusers_vae
from ldm_course.config import VAEConfig
from ldm_course.vae import VAE, DiagonalGaussian, vae_loss

SMALL = VAEConfig(base_channels=8, channel_mult=(1, 2, 2, 4), norm_groups=4)


def test_kl_equals_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    ours = DiagonalGaussian(mean, logvar).kl()
    ref = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=(1, 2, 3))
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)


def test_reparameterised_samples_have_posterior_mean_and_std():
    mean = torch.tensor([1.5, -2.0, 0.0]).view(1, 3, 1, 1).expand(20000, 3, 1, 1)
    logvar = torch.tensor([0.0, -2.0, 1.0]).view(1, 3, 1, 1).expand(20000, 3, 1, 1)
    z = DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        z.mean(0).flatten(), torch.tensor([1.5, -2.0, 0.0]), atol=0.03, rtol=0
    )
    torch.testing.assert_close(
        z.std(0).flatten(), torch.tensor([0.0, -2.0, 1.0]).mul(0.5).exp(), atol=0.03, rtol=0
    )


def test_gradients_flow_through_sample():
    mean = torch.zeros(2, 4, 2, 2, requires_grad=True)
    logvar = torch.zeros(2, 4, 2, 2, requires_grad=True)
    DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(1)).pow(2).sum().backward()
    assert mean.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def test_same_generator_same_sample():
    post = DiagonalGaussian(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8))
    a = post.sample(torch.Generator().manual_seed(3))
    b = post.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("size", [32, 64, 96])
def test_default_vae_shapes(size):
    vae = VAE()
    assert vae.downsample_factor == 8
    x = torch.rand(2, 3, size, size) * 2 - 1
    post = vae.encode(x)
    assert post.mean.shape == (2, 4, size // 8, size // 8)
    assert vae.decode(post.mode()).shape == x.shape


def test_default_config_is_48x_compression():
    cfg = VAEConfig()
    assert (3 * 64 * 64) / (cfg.latent_channels * 8 * 8) == 48


def test_factor_follows_channel_mult():
    vae = VAE(VAEConfig(base_channels=8, channel_mult=(1, 2), norm_groups=4))
    assert vae.downsample_factor == 2
    assert vae.encode(torch.zeros(1, 3, 6, 6)).mean.shape == (1, 4, 3, 3)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(1, 3, 60, 64), r"60x64.*multiples of the downsampling factor 8"),
        (torch.zeros(1, 1, 64, 64), r"1 channels, the model expects 3"),
        (torch.full((1, 3, 64, 64), 255.0), r"far outside \[-1, 1\]"),
        (torch.zeros(3, 64, 64), r"must be \(B, C, H, W\)"),
    ],
)
def test_clear_errors(x, match):
    with pytest.raises(ValueError, match=match):
        VAE(SMALL).encode(x)


def test_decode_checks_latent_channels():
    with pytest.raises(ValueError, match=r"latents must be \(B, 4"):
        VAE(SMALL).decode(torch.zeros(1, 3, 8, 8))


def test_vae_loss_parts_and_weights(emoji_batch):
    vae = VAE(SMALL)
    x = emoji_batch[:4]
    recon, post = vae(x, generator=torch.Generator().manual_seed(0))
    total, parts = vae_loss(x, recon, post, kl_weight=0.5)
    assert parts["recon"] == pytest.approx((x - recon).abs().mean().item(), rel=1e-6)
    assert parts["kl"] == pytest.approx(post.kl().mean().item() / x[0].numel(), rel=1e-6)
    assert total.item() == pytest.approx(parts["recon"] + 0.5 * parts["kl"], rel=1e-6)
    _, parts2 = vae_loss(x, recon, post, recon_loss="l2")
    assert parts2["recon"] == pytest.approx((x - recon).pow(2).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs an LPIPS module"):
        vae_loss(x, recon, post, perceptual_weight=1.0)
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        vae_loss(x, recon, post, recon_loss="l3")


def test_vae_loss_with_lpips_subset(emoji_batch):
    from ldm_course.perceptual import LPIPS

    lpips = LPIPS()
    x = emoji_batch[:4]
    recon = x.flip(-1)
    post = DiagonalGaussian(torch.zeros(4, 4, 8, 8), torch.zeros(4, 4, 8, 8))
    _, parts = vae_loss(x, recon, post, lpips=lpips, perceptual_weight=1.0, perceptual_batch=2)
    assert parts["lpips"] == pytest.approx(lpips(recon[:2], x[:2]).mean().item(), rel=1e-6)


def test_a_few_steps_lower_the_loss_and_are_reproducible(emoji_batch):
    x = torch.nn.functional.avg_pool2d(emoji_batch[:8], 2)  # (8, 3, 32, 32): keeps the test quick

    def run():
        torch.manual_seed(0)
        vae = VAE(SMALL)

        def loss(step):
            recon, post = vae(x, generator=torch.Generator().manual_seed(step))
            return vae_loss(x, recon, post)[0]

        return optimise(vae.parameters(), loss, steps=25, lr=2e-3)

    a, b = run(), run()
    assert a == b
    assert sum(a[-5:]) / 5 < 0.7 * sum(a[:5]) / 5


def test_matched_diffusers_vae_decoder_computes_our_function():
    """The decoders match exactly. The encoders differ only in padding before each stride-2
    convolution: ours pads 1 on every side, diffusers' pads right and bottom (as LDM's does)."""
    cfg = TINY_DIFFUSERS.vae
    ours, theirs = VAE(cfg).eval(), diffusers_vae(cfg, sample_size=16).eval()
    randomise(ours)
    z = torch.randn(2, cfg.latent_channels, 8, 8)
    copy_into_diffusers(
        param_modules(ours.decoder, lambda: ours.decode(z)),
        param_modules(theirs.decoder, lambda: theirs.decode(z)),
    )
    with torch.no_grad():
        torch.testing.assert_close(ours.decode(z), theirs.decode(z).sample, atol=1e-5, rtol=1e-4)
