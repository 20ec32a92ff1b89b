"""The small random model the build checks of notebooks 04 and 05 run the learner's code on."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ldm_course.config import UNetConfig, VAEConfig
from ldm_course.course.checks.core import keep_rng
from ldm_course.diffusion import LatentDiffusion
from ldm_course.schedules import make_schedule
from ldm_course.unet import UNet
from ldm_course.vae import VAE


def check_device(device: torch.device | str | None = None) -> torch.device:
    """Where a build check runs the learner's code: the given device, else the notebook's when it
    is a CUDA GPU (get_device() picks cuda first), else the CPU. On a GPU, an answer that leaves a
    tensor on the CPU fails here, as it would inside train_ldm, not an hour later."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@contextmanager
def exact_convolutions(device: torch.device) -> Iterator[None]:
    """On a CUDA GPU, TF32 off for convolutions and matmuls while a build check runs (cuDNN uses
    TF32 for convolutions by default): the tiny model's large weights would turn TF32's rounding
    into differences beyond the check's tolerance between two correct answers. Restored after."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tiny_ldm(num_classes: int = 3, device: torch.device | str = "cpu") -> LatentDiffusion:
    """A small random LatentDiffusion, the same on every call: 32x32 images, 4x4x4 latents, a
    cosine schedule with T = 20 (each step changes alpha_bar visibly), scale_factor 0.7; its
    weights drawn on the CPU, then moved to `device`."""
    with keep_rng():
        torch.manual_seed(0)
        vae = VAE(VAEConfig(base_channels=4, norm_groups=4))
        unet = UNet(
            UNetConfig(
                base_channels=8,
                num_res_blocks=1,
                attention_levels=(),
                norm_groups=4,
                num_classes=num_classes,
            )
        )
    gen = torch.Generator().manual_seed(0)
    # large random weights (the output layer starts at zero): the loss is a sharp fingerprint of
    # its inputs, so two different wrong answers rarely give the same loss
    for p in unet.parameters():
        p.data = torch.randn(p.shape, generator=gen)
    for p in vae.decoder.parameters():  # decoded images reach beyond [-1, 1]: clamping shows
        p.data = torch.randn(p.shape, generator=gen) * 0.3
    model = LatentDiffusion(vae, unet, make_schedule("cosine", 20), 0.7, image_size=32)
    return model.to(device).eval()
