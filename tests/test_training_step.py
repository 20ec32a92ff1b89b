"""One training step (LatentDiffusion.training_step), the one train_ldm trains with; and what a
training call leaves behind in the caller's process: nothing but its return values."""

import pytest
import torch

from ldm_course.config import LDMTrainConfig, UNetConfig, VAEConfig, VAETrainConfig
from ldm_course.data import TensorImageDataset
from ldm_course.diffusion import LatentDiffusion, diffusion_loss
from ldm_course.infra.distributed import World
from ldm_course.schedules import make_schedule
from ldm_course.training.train_ldm import loop_step, train_ldm
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


def batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mean, std = torch.randn(6, 4, 4, 4, generator=gen), torch.rand(6, 4, 4, 4, generator=gen)
    return mean, std, torch.tensor([0, 1, 2, 0, 1, 2])


def by_hand(ldm, mean, std, y, *, seed, mirror=None):
    """The step by hand, draws in the docstrings' order (the fifth, the flip coins, with mirror)."""
    g = torch.Generator().manual_seed(seed)
    eps_z = torch.randn(6, 4, 4, 4, generator=g)
    t = torch.randint(0, 50, (6,), generator=g)
    noise = torch.randn(6, 4, 4, 4, generator=g)
    drop = torch.rand(6, generator=g) < 0.5
    mu, sigma, flipped = mean, std, None
    if mirror is not None:
        flipped = (torch.rand(6, generator=g) < 0.5) & mirror[2]
        mu = torch.stack([mirror[0][i] if flipped[i] else mean[i] for i in range(6)])
        sigma = torch.stack([mirror[1][i] if flipped[i] else std[i] for i in range(6)])
    z_0 = 0.7 * (mu + sigma * eps_z)
    y_used = torch.where(drop, torch.full_like(y, 3), y)
    assert drop.any() and (~drop).any()  # both branches
    loss = diffusion_loss(ldm.unet, z_0, t, noise, ldm.schedule, y_used, min_snr_gamma=5.0)
    return loss, flipped


CFG = LDMTrainConfig(cond_drop_prob=0.5, min_snr_gamma=5.0)


def test_training_step_is_the_documented_draws_and_diffusion_loss():
    ldm = tiny_ldm()
    mean, std, y = batch()
    gen = torch.Generator().manual_seed(0)
    loss = ldm.training_step(mean, std, y, generator=gen, cond_drop_prob=0.5, min_snr_gamma=5.0)
    expected, _ = by_hand(ldm, mean, std, y, seed=0)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


def test_the_loops_step_with_flip_is_training_steps_draws_then_the_coins():
    ldm = tiny_ldm()
    mean, std, y = batch()
    gen = torch.Generator().manual_seed(0)
    mirror = (torch.randn(6, 4, 4, 4, generator=gen), std.flip(0))
    mirror += (torch.tensor([True, True, True, False, False, True]),)
    gen = torch.Generator().manual_seed(0)
    loss = loop_step(ldm, ldm.unet, mean, std, y, gen, cfg=CFG, mirror=mirror, world=World())
    expected, flipped = by_hand(ldm, mean, std, y, seed=0, mirror=mirror)
    assert flipped.any() and (~flipped).any()
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


@pytest.mark.parametrize("mirrored", [False, True])
def test_the_loops_step_without_flip_or_with_symmetric_images_is_training_step(mirrored):
    """loop_step repeats training_step's four draws: without flip (one process) it is the same
    loss to the bit, and with mirror images equal to the images, too (the coins come last)."""
    ldm = tiny_ldm()
    mean, std, y = batch(1)
    mirror = (mean, std, torch.ones(6, dtype=torch.bool)) if mirrored else None
    ours = loop_step(
        ldm,
        ldm.unet,
        mean,
        std,
        y,
        torch.Generator().manual_seed(1),
        cfg=CFG,
        mirror=mirror,
        world=World(),
    )
    gen = torch.Generator().manual_seed(1)
    theirs = ldm.training_step(mean, std, y, generator=gen, cond_drop_prob=0.5, min_snr_gamma=5.0)
    assert torch.equal(ours, theirs)


def test_the_loops_step_on_two_shards_averages_to_the_whole_batch():
    """DDP: each of two processes trains its rows of the global batch's draws; the mean of their
    losses is the loss of the whole batch on one process."""
    ldm = tiny_ldm()
    mean, std, y = batch(2)
    cfg = LDMTrainConfig(cond_drop_prob=0.5)  # L_simple: a plain mean over the rows
    losses = [
        loop_step(
            ldm,
            ldm.unet,
            mean,
            std,
            y,
            torch.Generator().manual_seed(2),
            cfg=cfg,
            mirror=None,
            world=World(rank=r, size=2),
        )
        for r in (0, 1)
    ]
    whole = ldm.training_step(
        mean, std, y, generator=torch.Generator().manual_seed(2), cond_drop_prob=0.5
    )
    torch.testing.assert_close((losses[0] + losses[1]) / 2, whole, rtol=1e-6, atol=0)


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


@pytest.mark.slow  # over 7 s: in CI's full run, not the fast subset
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
