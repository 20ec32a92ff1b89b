"""Small helpers shared by several test files: tiny seeded data and models, an optimiser loop,
and a way to import scripts that live outside the package."""

import torch
from torch import nn

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


# Reference tests against diffusers: copy our weights into the matched diffusers module.


def param_modules(model: nn.Module, run) -> list[nn.Module]:
    """Leaf modules with parameters, in the order the forward pass first calls them."""
    order = []
    leaves = [m for m in model.modules() if not list(m.children()) and list(m.parameters())]
    hooks = [
        m.register_forward_hook(lambda m, i, o: order.append(m) if m not in order else None)
        for m in leaves
    ]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return order


def copy_into_diffusers(ours: list[nn.Module], theirs: list[nn.Module]) -> None:
    """Copy weights pairwise in call order. Our attention's 1x1 qkv convolution (3C, C, 1, 1)
    becomes diffusers' to_q, to_k, to_v Linear layers (C, C) each; 1x1 proj becomes to_out."""
    theirs = iter(theirs)
    for mine in ours:
        other = next(theirs)
        if isinstance(mine, nn.Conv2d) and isinstance(other, nn.Linear):
            targets = [other]
            if mine.out_channels == 3 * mine.in_channels:  # q, k, v
                targets += [next(theirs), next(theirs)]
            for target, w, b in zip(
                targets, mine.weight.chunk(len(targets)), mine.bias.chunk(len(targets)), strict=True
            ):
                target.weight.data.copy_(w.flatten(1))  # (C, C, 1, 1) -> (C, C)
                target.bias.data.copy_(b)
            continue
        for p_mine, p_other in zip(mine.parameters(), other.parameters(), strict=True):
            p_other.data.copy_(p_mine.data)
    assert next(theirs, None) is None


def randomise(model: nn.Module) -> None:
    """Our zero-initialised layers would hide mistakes: give every parameter random values."""
    gen = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen) * 0.1)
