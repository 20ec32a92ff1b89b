"""Small helpers shared by several test files: tiny seeded data and models, an optimiser loop,
and a way to import scripts that live outside the package."""

import torch

from ldm_course.config import UNetConfig, VAEConfig
from ldm_course.data import TensorImageDataset
from ldm_course.diffusion import LatentDiffusion
from ldm_course.schedules import make_schedule
from ldm_course.unet import UNet
from ldm_course.vae import VAE


def random_images(n: int, *, seed: int, size: int = 32) -> torch.Tensor:
    """(n, 3, size, size) uniform in [-1, 1], drawn from a generator seeded with `seed`."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_data(
    n: int = 8,
    *,
    seed: int = 0,
    class_names: tuple[str, ...] = ("a", "b"),
    labels: torch.Tensor | None = None,
) -> TensorImageDataset:
    """n random 32x32 images (random_images), labelled 0, 1, 0, 1, ... over class_names unless
    `labels` (n,) is given."""
    if labels is None:
        labels = torch.arange(n) % len(class_names)  # (n,)
    return TensorImageDataset(random_images(n, seed=seed), labels, class_names=class_names)


def tiny_ldm(
    *, image_size: int = 16, num_classes: int | None = None, class_names: tuple[str, ...] = ()
) -> LatentDiffusion:
    """A random latent diffusion model in eval mode: a VAE with f = 8 (16x16 -> 2x2 latents,
    64x64 -> 8x8), a one-level U-Net, a linear schedule of T = 20. Seeds the global generator
    with 0 first (modules initialise from it), as every test that used it did before."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(base_channels=8, channel_mult=(1, 1, 1, 1)))
    unet = UNet(
        UNetConfig(
            base_channels=16, channel_mult=(1,), attention_levels=(0,), num_classes=num_classes
        )
    )
    schedule = make_schedule("linear", 20)
    return LatentDiffusion(
        vae, unet, schedule, 1.0, image_size=image_size, class_names=class_names
    ).eval()


def optimise(params, loss_fn, *, steps: int, lr: float) -> list[float]:
    """Adam on loss_fn(step) for `steps` steps; the losses (tests check they fall and repeat)."""
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for step in range(steps):
        loss = loss_fn(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def load_script(path: str):
    """Import a script that lives outside the package (scripts/...) as a module, by its path
    from the repository root, so its functions can be tested without putting scripts/ on sys.path."""
    import importlib.util
    from pathlib import Path

    file = Path(__file__).resolve().parents[1] / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
