import pytest
import torch
from helpers import optimise

from ldm_course.config import UNetConfig, VAEConfig
from ldm_course.diffusion import LatentDiffusion, diffusion_loss, guided_eps
from ldm_course.schedules import make_schedule
from ldm_course.training.train_ldm import cache_latents
from ldm_course.unet import UNet
from ldm_course.vae import VAE

VAE_CFG = VAEConfig(base_channels=8, norm_groups=4)
UNET_CFG = UNetConfig(
    base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), num_classes=3
)


def make_ldm(scale_factor=0.5):
    torch.manual_seed(0)
    return LatentDiffusion(VAE(VAE_CFG), UNet(UNET_CFG), make_schedule("linear", 100), scale_factor)


def test_diffusion_loss_is_the_epsilon_mse():
    schedule = make_schedule("linear", 100)
    z0, noise = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    t = torch.tensor([0, 10, 50, 99])

    def oracle(z_t, t, y):  # recovers the noise exactly from z_t and the known z0
        a = schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
        return (z_t - a.sqrt() * z0) / (1 - a).sqrt()

    assert diffusion_loss(oracle, z0, t, noise, schedule).item() < 1e-8
    zero = diffusion_loss(lambda z, t, y: torch.zeros_like(z), z0, t, noise, schedule)
    assert zero.item() == pytest.approx(noise.pow(2).mean().item(), rel=1e-6)


def test_min_snr_loss_matches_diffusers_training_recipe():
    """Reference: the diffusers text-to-image script's Min-SNR weights (compute_snr, epsilon
    prediction: min(SNR, gamma) / SNR) on the same schedule, inputs and predictions."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    schedule = make_schedule("linear", 1000)
    gen = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(64, 4, 8, 8, generator=gen), torch.randn(64, 4, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (64,), generator=gen)
    t[:2] = torch.tensor([0, 999])  # both ends: SNR ~ 1e4 (weight ~ 5e-4) and ~ 4e-5 (weight 1)

    def model(z_t, t, y):  # any fixed prediction that is not the noise
        return 0.5 * z_t

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    snr = compute_snr(ref, t)
    weight = torch.stack([snr, 5.0 * torch.ones_like(snr)], dim=1).min(dim=1)[0] / snr
    z_t = ref.add_noise(z0, noise, t)
    per_sample = (model(z_t, t, None) - noise).pow(2).mean(dim=(1, 2, 3))
    expected = (per_sample * weight).mean()
    got = diffusion_loss(model, z0, t, noise, schedule, min_snr_gamma=5.0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)
    assert got < 0.9 * diffusion_loss(model, z0, t, noise, schedule)  # it does down-weight
    # gamma above every SNR: all weights 1, L_simple again
    big = diffusion_loss(model, z0, t, noise, schedule, min_snr_gamma=1e6)
    torch.testing.assert_close(big, diffusion_loss(model, z0, t, noise, schedule))
    with pytest.raises(ValueError, match="min_snr_gamma must be >= 0"):
        diffusion_loss(model, z0, t, noise, schedule, min_snr_gamma=-1.0)


def test_classifier_free_guidance_combination():
    unet = UNet(UNET_CFG)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    z, t, y = torch.randn(2, 4, 8, 8), torch.tensor([5, 50]), torch.tensor([0, 2])
    cond, uncond = unet(z, t, y), unet(z, t, None)
    torch.testing.assert_close(
        guided_eps(unet, z, t, y, 4.0), uncond + 4.0 * (cond - uncond), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(guided_eps(unet, z, t, y, 1.0), cond)
    torch.testing.assert_close(guided_eps(unet, z, t, y, 0.0), uncond, atol=1e-5, rtol=1e-5)


def test_generate_shapes_range_and_determinism():
    ldm = make_ldm().eval()
    a = ldm.generate(3, steps=4, y=1, generator=torch.Generator().manual_seed(0), progress=False)
    b = ldm.generate(
        3,
        steps=4,
        y=torch.tensor([1, 1, 1]),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert a.shape == (3, 3, 64, 64) and a.abs().max() <= 1
    assert torch.equal(a, b)
    z = ldm.generate(
        2,
        sampler="ddpm",
        generator=torch.Generator().manual_seed(0),
        progress=False,
        return_latents=True,
    )
    assert z.shape == (2, 4, 8, 8)


def test_encode_decode_apply_the_scale_factor(emoji_batch):
    ldm = make_ldm(scale_factor=0.25)
    x = emoji_batch[:2]
    z = ldm.encode(x)
    torch.testing.assert_close(z, 0.25 * ldm.vae.encode(x).mean)
    torch.testing.assert_close(ldm.decode(z), ldm.vae.decode(z / 0.25))


def test_training_steps_lower_the_loss_and_repeat_exactly(emoji_batch):
    def run():
        ldm = make_ldm()
        with torch.no_grad():
            posterior = ldm.vae.encode(emoji_batch)  # q(z|x), (16, 4, 8, 8)
        y = torch.arange(16) % 3
        return optimise(
            ldm.unet.parameters(),
            lambda step: ldm.training_step(
                posterior.mean,
                posterior.std,
                y,
                generator=torch.Generator().manual_seed(step % 4),
                cond_drop_prob=0.2,
            ),
            steps=40,
            lr=3e-3,
        )

    a, b = run(), run()
    assert a == b
    assert sum(a[-8:]) / 8 < 0.7 * sum(a[:8]) / 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale_factor": 0.0}, "scale_factor must be positive"),
        ({"image_size": 60}, "not a multiple"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = {"scale_factor": 1.0, "image_size": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        LatentDiffusion(
            VAE(VAE_CFG),
            UNet(UNET_CFG),
            make_schedule("linear", 10),
            args["scale_factor"],
            image_size=args["image_size"],
        )


def test_channel_mismatch_and_bad_labels():
    with pytest.raises(ValueError, match="takes 3 channels"):
        LatentDiffusion(
            VAE(VAE_CFG),
            UNet(UNetConfig(in_channels=3, base_channels=16)),
            make_schedule("linear", 10),
            1.0,
        )
    ldm = make_ldm()
    with pytest.raises(ValueError, match=r"y must be one class id or \(2,\)"):
        ldm.generate(2, steps=2, y=torch.tensor([0, 1, 2]), progress=False)
    with pytest.raises(ValueError, match="'ddim' or 'ddpm'"):
        ldm.generate(1, sampler="euler", progress=False)


def test_latent_cache_is_reused_only_for_the_same_encoder_and_images(tmp_path, emoji_batch):
    torch.manual_seed(0)
    vae = VAE(VAE_CFG).eval()
    path = tmp_path / "latents.safetensors"
    mean, std = cache_latents(vae, emoji_batch, path)
    encodes = []
    vae.encoder.register_forward_pre_hook(lambda *_: encodes.append(1))
    again, _ = cache_latents(vae, emoji_batch, path)
    assert not encodes and torch.equal(again, mean)  # read back, not re-encoded
    with torch.no_grad():
        vae.encoder.conv_in.weight.mul_(2)  # another encoder, same run folder
    changed, _ = cache_latents(vae, emoji_batch, path)
    assert encodes and not torch.allclose(changed, mean)
    assert torch.equal(changed, vae.encode(emoji_batch).mean)
    other_images, _ = cache_latents(vae, emoji_batch.flip(-1), path)  # same count, other images
    assert torch.equal(other_images, vae.encode(emoji_batch.flip(-1)).mean)
