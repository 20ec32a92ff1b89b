"""One training step (LatentDiffusion.training_step), the one train_ldm trains with; and what a
training call leaves behind in the caller's process: nothing but its return values."""

import torch

from ldm_course.config import LDMTrainConfig, UNetConfig, VAEConfig, VAETrainConfig
from ldm_course.data import TensorImageDataset
from ldm_course.diffusion import LatentDiffusion, diffusion_loss
from ldm_course.schedules import make_schedule
from ldm_course.training.train_ldm import train_ldm
from ldm_course.training.train_vae import train_vae
from ldm_course.unet import UNet
from ldm_course.vae import VAE

TINY_UNET = UNetConfig(base_channels=8, num_res_blocks=1, attention_levels=(), norm_groups=4)
TINY_VAE = VAEConfig(base_channels=4, norm_groups=4)


def tiny_data(n: int = 16) -> TensorImageDataset:
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return TensorImageDataset(images, torch.arange(n) % 2, class_names=("even", "odd"))


def tiny_ldm(num_classes=3) -> LatentDiffusion:
    gen = torch.Generator().manual_seed(0)
    unet = UNet(UNetConfig(**{**TINY_UNET.__dict__, "num_classes": num_classes}))
    for p in unet.parameters():  # the zero-initialised output layer would hide the inputs
        p.data = torch.randn(p.shape, generator=gen) * 0.1
    return LatentDiffusion(VAE(TINY_VAE), unet, make_schedule("linear", 50), 0.7, image_size=32)


def test_training_step_is_the_documented_draws_and_diffusion_loss():
    ldm = tiny_ldm()
    gen = torch.Generator().manual_seed(0)
    mean, std = torch.randn(6, 4, 4, 4, generator=gen), torch.rand(6, 4, 4, 4, generator=gen)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    mirror_mean, mirror_std = torch.randn(6, 4, 4, 4, generator=gen), std.flip(0)
    mirrorable = torch.tensor([True, True, True, False, False, True])
    loss = ldm.training_step(
        mean,
        std,
        y,
        generator=torch.Generator().manual_seed(0),
        cond_drop_prob=0.5,
        min_snr_gamma=5.0,
        mirror=(mirror_mean, mirror_std, mirrorable),
    )
    # the same step by hand, draws in the docstring's order
    g = torch.Generator().manual_seed(0)
    eps_z = torch.randn(6, 4, 4, 4, generator=g)
    t = torch.randint(0, 50, (6,), generator=g)
    noise = torch.randn(6, 4, 4, 4, generator=g)
    drop = torch.rand(6, generator=g) < 0.5
    flipped = (torch.rand(6, generator=g) < 0.5) & mirrorable
    mu = torch.stack([mirror_mean[i] if flipped[i] else mean[i] for i in range(6)])
    sigma = torch.stack([mirror_std[i] if flipped[i] else std[i] for i in range(6)])
    z_0 = 0.7 * (mu + sigma * eps_z)
    y_used = torch.where(drop, torch.full_like(y, 3), y)
    expected = diffusion_loss(ldm.unet, z_0, t, noise, ldm.schedule, y_used, min_snr_gamma=5.0)
    assert flipped.any() and (~flipped).any() and drop.any() and (~drop).any()  # both branches
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


def test_without_mirror_the_first_four_draws_are_the_same():
    ldm = tiny_ldm()
    mean, std = torch.randn(4, 4, 4, 4), torch.rand(4, 4, 4, 4)
    plain = ldm.training_step(mean, std, generator=torch.Generator().manual_seed(1))
    same_images = (mean, std, torch.ones(4, dtype=torch.bool))  # mirror images equal to images
    mirrored = ldm.training_step(
        mean, std, generator=torch.Generator().manual_seed(1), mirror=same_images
    )
    assert torch.equal(plain, mirrored)


def ldm_config(**kw) -> LDMTrainConfig:
    return LDMTrainConfig(
        steps=3,
        batch_size=8,
        warmup_steps=1,
        size=32,
        log_every=1,
        sample_every=0,
        checkpoint_every=0,
        unet=TINY_UNET,
        **kw,
    )


def test_train_ldm_trains_with_training_step_and_returns_its_class_names(tmp_path, monkeypatch):
    calls = []
    step = LatentDiffusion.training_step

    def counted(self, *args, **kwargs):
        calls.append(kwargs["min_snr_gamma"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(LatentDiffusion, "training_step", counted)
    torch.manual_seed(0)
    vae = VAE(TINY_VAE)
    ldm, history = train_ldm(
        ldm_config(min_snr_gamma=5.0), tmp_path / "run", vae, data=tiny_data(), progress=False
    )
    assert calls == [5.0, 5.0, 5.0] and len(history["loss"]) == 3
    assert ldm.class_names == ("even", "odd")  # part of the object, not patched on by a loader


def test_training_leaves_the_callers_threads_and_global_rng_alone(tmp_path):
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    expected = torch.rand(5)  # what the caller would draw next, untouched by training
    torch.manual_seed(0)
    vae = VAE(TINY_VAE)
    torch.manual_seed(1234)
    train_ldm(
        ldm_config(num_threads=threads + 1), tmp_path / "ldm", vae, data=tiny_data(), progress=False
    )
    train_vae(
        VAETrainConfig(
            steps=2,
            batch_size=4,
            size=32,
            perceptual_weight=0.0,
            sample_every=0,
            checkpoint_every=0,
            num_threads=threads + 1,
            vae=TINY_VAE,
        ),
        tmp_path / "vae",
        data=tiny_data(),
        progress=False,
    )
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(5), expected)


def test_initial_weights_depend_on_the_seed_only(tmp_path):
    cfg = VAETrainConfig(
        steps=1, batch_size=4, size=32, perceptual_weight=0.0, lr=0.0, min_lr=0.0,
        sample_every=0, checkpoint_every=0, vae=TINY_VAE,
    )  # fmt: skip
    torch.manual_seed(1)
    a, _ = train_vae(cfg, tmp_path / "a", data=tiny_data(), progress=False)
    torch.manual_seed(2)  # another caller state: the same weights
    b, _ = train_vae(cfg, tmp_path / "b", data=tiny_data(), progress=False)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
