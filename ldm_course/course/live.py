"""What the notebooks train live: two kinds of emoji a small model learns in a minute or two.

The whole Twemoji set is 3,388 training images in 10 categories; most emoji outside People & Body
are one image each, which a model trained for two minutes on a laptop CPU can only blur. The live
runs of notebooks 01, 04 and 05 learn a subset instead, chosen so that the result is recognisable
within the notebook's budget:

    faces   the `face-*` subcategories of Smileys & Emotion (106 train, 12 test images): one
            round yellow shape with many near-relatives, so few steps learn what they share
    flags   the Flags category (241 train, 29 test images): rectangles of flat colour

Recipes (measured on a 2-core CPU; `docs/course_guide.md` has the times):
    live_vae_config   VAE at 32x32, f = 4, so latents are 4 x 8 x 8 like the shipped model's
    live_ldm_config   a two-level U-Net at lr 3e-3, 1,200 steps: both kinds in two minutes
On a GPU both return the `gpu` preset's larger models with more steps on the same subset.
"""

from dataclasses import replace
from typing import Literal

import torch

from ldm_course.config import LDMTrainConfig, VAEConfig, VAETrainConfig, ldm_preset, vae_preset
from ldm_course.data import TensorImageDataset, twemoji

LIVE_CLASSES = ("faces", "flags")  # label 0, label 1


def live_subset(split: Literal["train", "test"], *, size: int = 64) -> TensorImageDataset:
    """Faces (label 0) and flags (label 1) of a Twemoji split, images (N, 3, size, size) in [-1, 1].

    The split is Twemoji's (by base emoji), so the test images are emoji never trained on."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    fine = twemoji(split, size=size, labels="subcategory")  # 99 subcategory labels
    coarse = twemoji(split, size=size, labels="category")  # the same images, 10 category labels
    face = torch.tensor([fine.class_names[i].startswith("face-") for i in fine.labels.tolist()])
    flag = coarse.labels == coarse.class_names.index("Flags")  # (N,) bools
    keep = face | flag
    return TensorImageDataset(
        fine.images[keep],
        flag[keep].long(),  # faces 0, flags 1
        class_names=LIVE_CLASSES,
        names=[n for n, k in zip(fine.names, keep.tolist(), strict=True) if k],
        groups=fine.groups[keep],
        mirrorable=fine.mirrorable[keep],
    )


def live_vae_config(*, gpu: bool = False) -> VAETrainConfig:
    """The live VAE: 32x32 images, three levels (f = 4), so latents are (4, 8, 8)."""
    if gpu:
        return replace(
            vae_preset("gpu"),
            size=32,
            steps=2000,
            sample_every=0,
            checkpoint_every=2000,
            vae=VAEConfig(base_channels=64, channel_mult=(1, 2, 4), num_res_blocks=2),  # f = 4
        )
    return replace(
        vae_preset("cpu-fast"),
        size=32,
        steps=400,
        sample_every=0,
        checkpoint_every=400,
        log_every=20,
        vae=VAEConfig(base_channels=16, channel_mult=(1, 2, 4)),  # f = 2**2 = 4
    )


def live_ldm_config(*, gpu: bool = False) -> LDMTrainConfig:
    """The live U-Net on (4, 8, 8) latents of faces and flags.

    CPU: two levels (8x8, 4x4), one ResBlock each, attention only in the middle block (0.65 M
    parameters, about 95 ms per step on one thread, so 1,200 steps take two minutes). The
    learning rate is high on purpose: with the preset's 4e-4 (and 600 steps of its U-Net) the
    noise prediction at large t stays too rough, DDIM's first steps amplify its error and the
    samples come out as coloured noise (notebook 04, section 5)."""
    if gpu:
        return replace(ldm_preset("gpu"), steps=3000, sample_every=0, checkpoint_every=3000)
    cpu_fast = ldm_preset("cpu-fast")  # base_channels=32, num_res_blocks=1
    return replace(
        cpu_fast,
        steps=1200,
        lr=3e-3,
        sample_every=0,
        checkpoint_every=1200,
        unet=replace(cpu_fast.unet, channel_mult=(1, 2), attention_levels=()),
    )
