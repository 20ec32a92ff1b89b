"""Numeric inputs of the public Python API are checked, not silently clamped or passed to torch:
metric ranges, the loaders' devices, the U-Net's timesteps and labels."""

import pytest
import torch
from helpers import random_images, tiny_ldm

from ldm_course.metrics import nearest_neighbours, psnr, ssim
from ldm_course.pretrained import load_ldm, load_vae


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_images_in_0_255_are_refused_by_the_metrics(metric):
    x = random_images(2, seed=0, size=16)
    with pytest.raises(ValueError, match=r"looks like \[0, 255\]; pass images in \[-1, 1\]"):
        metric((x + 1) * 127.5, (x.flip(-1) + 1) * 127.5)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_a_small_overshoot_is_clamped_as_documented(metric):
    x = random_images(2, seed=0, size=16)
    over = x * 1.5  # raw decoder output slightly outside [-1, 1]
    torch.testing.assert_close(metric(over, x), metric(over.clamp(-1, 1), x))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -3.0])
def test_non_finite_or_far_out_images_are_refused(bad):
    x = random_images(2, seed=0, size=16)
    y = x.clone()
    y[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf|far outside"):
        psnr(x, y)
    with pytest.raises(ValueError, match="NaN or inf|far outside"):
        nearest_neighbours(y, x)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_the_loaders_refuse_a_missing_gpu_in_one_line():
    with pytest.raises(ValueError, match="device='cuda': CUDA is not available here"):
        load_vae(device="cuda")
    with pytest.raises(ValueError, match="device='cuda:1': CUDA is not available here"):
        load_ldm(device="cuda:1")


def test_the_loaders_refuse_a_device_that_does_not_exist():
    with pytest.raises(ValueError, match="'gpu'.* is not a device; use auto, cpu"):
        load_vae(device="gpu")


@pytest.fixture(scope="module")
def ldm():
    return tiny_ldm(num_classes=3)  # T = 20, classes 0..2, 3 = null


@pytest.mark.parametrize(
    "t, message",
    [
        (20, r"t=20 is outside the timesteps \[0, 20\)"),
        (-1, r"t=-1 is outside"),
        (torch.tensor([0, 20]), r"t holds timesteps in \[0, 20\], outside the \[0, 20\)"),
        (torch.tensor([-1, 3]), r"outside the \[0, 20\)"),
        (torch.tensor([0.5, 3.0]), "integer timesteps, got a torch.float32 tensor; pass t.long"),
        (2.5, "t must be an integer timestep"),
    ],
)
def test_timesteps_outside_the_schedule_or_fractional_are_refused(ldm, t, message):
    x = torch.zeros(2, 4, 2, 2)
    with pytest.raises(ValueError, match=message):
        ldm.unet(x, t, torch.tensor([0, 1]))


@pytest.mark.parametrize(
    "y, message",
    [
        (torch.tensor([0.0, 1.0]), "integer class ids"),
        (torch.tensor([0, 4]), r"class ids in \[0, 3\].*got ids from 0 to 4"),
        (torch.tensor([-1, 0]), r"class ids in \[0, 3\]"),
    ],
)
def test_labels_float_or_outside_the_classes_are_refused(ldm, y, message):
    with pytest.raises(ValueError, match=message):
        ldm.unet(torch.zeros(2, 4, 2, 2), 5, y)


def test_valid_timesteps_and_labels_pass(ldm):
    x = torch.zeros(2, 4, 2, 2)
    for t in (0, 19, torch.tensor([0, 19]), torch.tensor(7, dtype=torch.int32)):
        assert ldm.unet(x, t, torch.tensor([0, 3])).shape == x.shape
    ldm.unet.num_timesteps = None  # a U-Net on its own knows no T: only t >= 0 is checked
    try:
        assert ldm.unet(x, 999).shape == x.shape
    finally:
        ldm.unet.num_timesteps = 20


def test_a_unet_built_with_attention_at_a_level_it_lacks_is_refused():
    from ldm_course.config import UNetConfig
    from ldm_course.unet import UNet

    with pytest.raises(ValueError, match=r"attention_levels \[7\] are not levels of this U-Net"):
        UNet(UNetConfig(base_channels=8, norm_groups=4, channel_mult=(1, 2), attention_levels=(7,)))
