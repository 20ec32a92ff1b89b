"""The live-run subset and recipes (ldm_course/course/live.py)."""

import pytest
import torch

from ldm_course.course.live import LIVE_CLASSES, live_ldm_config, live_subset, live_vae_config
from ldm_course.data import twemoji
from ldm_course.unet import UNet
from ldm_course.vae import VAE


@pytest.mark.parametrize("split", ["train", "test"])
def test_subset_is_the_face_subcategories_and_the_flags_category(split):
    live = live_subset(split, size=16)
    fine = twemoji(split, size=16, labels="subcategory")
    coarse = twemoji(split, size=16)
    # counted another way: by name, over the whole split
    faces = [
        i for i, y in enumerate(fine.labels.tolist()) if fine.class_names[y].startswith("face-")
    ]
    flags = [i for i, y in enumerate(coarse.labels.tolist()) if coarse.class_names[y] == "Flags"]
    assert live.class_names == LIVE_CLASSES == ("faces", "flags")
    assert torch.bincount(live.labels, minlength=2).tolist() == [len(faces), len(flags)]
    assert torch.equal(live.images, fine.images[sorted(faces + flags)])
    assert live.images.shape[1:] == (3, 16, 16)
    assert len(live.names) == len(live) and live.groups.shape == live.labels.shape


def test_train_and_test_share_no_emoji():
    train, test = live_subset("train"), live_subset("test")
    assert not set(train.names) & set(test.names)
    assert (
        len(train) > 10 * len(test) / 2
    )  # the Twemoji split: about a tenth of base emoji held out


def test_bad_split_names_the_choices():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        live_subset("all")


@pytest.mark.parametrize("gpu", [False, True])
def test_recipes_give_latents_of_the_shipped_shape(gpu):
    """Both recipes meet at (4, 8, 8) latents of 32x32 images, the shape of the shipped model's."""
    vae_cfg, ldm_cfg = live_vae_config(gpu=gpu), live_ldm_config(gpu=gpu)
    vae = VAE(vae_cfg.vae).eval()
    x = torch.zeros(1, 3, vae_cfg.size, vae_cfg.size)
    with torch.no_grad():
        z = vae.encode(x).mean
        assert tuple(z.shape) == (1, 4, 8, 8)
        unet = UNet(ldm_cfg.unet).eval()
        assert unet(z, torch.tensor([10])).shape == z.shape
    assert (vae_cfg.precision == "auto") == gpu and (ldm_cfg.precision == "auto") == gpu
