"""Watch a model learn (notebooks 01, 04, 05): snapshots of its output at a few steps of a run,
taken through the `watch` hook of train_vae / train_ldm, shown beside the loss curve.

    steps = progress_steps(cfg.steps)                   # e.g. (0, 20, 50, 100, 200)
    frames = SampleFrames(noise, y)                     # the same noise at every snapshot
    ldm, history = train_ldm(cfg, run, vae, watch=frames, watch_at=steps)
    plot_progression(frames.frames, history)

The hook runs the collector under no_grad, in eval mode, with the EMA weights, and restores the
global RNG afterwards (train.call_watch): the run trains the same weights with or without it.
"""

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn

from ldm_course.course.viz import grid_array
from ldm_course.diffusion import LatentDiffusion, guided_eps
from ldm_course.samplers import ddim_sample
from ldm_course.vae import VAE


def progress_steps(
    total: int, fractions: Sequence[float] = (0, 0.1, 0.25, 0.5, 1.0)
) -> tuple[int, ...]:
    """The steps round(f * total) for each fraction f in [0, 1], sorted, without repeats."""
    if total < 1:
        raise ValueError(f"total={total}: a run has at least 1 step")
    bad = [f for f in fractions if not 0 <= f <= 1]
    if bad:
        raise ValueError(f"fractions must lie in [0, 1] (0 = before training), got {bad[0]}")
    return tuple(sorted({round(f * total) for f in fractions}))


class SampleFrames:
    """watch(step, ldm) for train_ldm: DDIM samples from one fixed noise z_T (N, C, h, w) and
    labels y (N,) (None: unconditional), decoded to images in [-1, 1]. Fixed noise: the change
    from frame to frame is the model's, not the draw's. frames: {step: (N, 3, H, W) on the CPU}."""

    def __init__(
        self,
        noise: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        steps: int = 20,
        guidance_scale: float = 1.0,
    ):
        if noise.ndim != 4:
            raise ValueError(f"noise must be (N, C, h, w) latents, got shape {tuple(noise.shape)}")
        if y is not None and tuple(y.shape) != (noise.shape[0],):
            raise ValueError(
                f"y must hold one label per noise, ({noise.shape[0]},), got {tuple(y.shape)}"
            )
        self.noise, self.y = noise, y
        self.steps, self.guidance_scale = steps, guidance_scale
        self.frames: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, step: int, ldm: LatentDiffusion) -> None:
        device = ldm.device
        y = self.y.to(device) if self.y is not None else None

        def eps_fn(z_t, t):
            return guided_eps(ldm.unet, z_t, t, y, self.guidance_scale)

        z_0 = ddim_sample(
            eps_fn,
            tuple(self.noise.shape),
            ldm.schedule,
            num_steps=self.steps,
            x_T=self.noise.to(device),
            progress=False,
        )  # (N, C, h, w)
        self.frames[step] = ldm.decode(z_0).clamp(-1, 1).cpu()  # (N, 3, H, W)


class ReconstructionFrames:
    """watch(step, vae) for train_vae: D(mean of q(z|x)) of fixed images x (N, 3, H, W) in
    [-1, 1]. frames: {step: reconstructions (N, 3, H, W) on the CPU}."""

    def __init__(self, images: torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
        self.images = images
        self.frames: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, step: int, vae: VAE | nn.Module) -> None:
        x = self.images.to(next(vae.parameters()).device)
        self.frames[step] = vae.decode(vae.encode(x).mode()).clamp(-1, 1).cpu()  # (N, 3, H, W)


def plot_progression(
    frames: dict[int, torch.Tensor],
    history: dict[str, Sequence[float]],
    *,
    key: str = "loss",
    title: str | None = None,
):
    """One row of images per snapshot step, labelled "step k (p %)" with p = k / the run's last
    step, beside the curve history[key] with the snapshot steps marked."""
    if not frames:
        raise ValueError("no frames: train with watch=collector and watch_at=progress_steps(steps)")
    if key not in history:
        raise ValueError(f"history has no {key!r}; choose one of {sorted(history)}")
    steps = sorted(frames)
    total = max([*history["step"], *steps]) or 1
    fig = plt.figure(figsize=(9.5, max(2.6, 0.9 * len(steps) + 0.4)))
    grid = fig.add_gridspec(len(steps), 2, width_ratios=(1.3, 1.0))
    for i, step in enumerate(steps):
        ax = fig.add_subplot(grid[i, 0])
        images = frames[step]
        ax.imshow(grid_array(images, nrow=len(images)).numpy())
        ax.set_xticks([])
        ax.set_yticks([])
        label = f"step {step} ({100 * step / total:.0f} %)"
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    curve = fig.add_subplot(grid[:, 1])
    curve.plot(history["step"], history[key], color="C0")
    for step in steps:
        curve.axvline(step, color="C1", lw=0.8, ls="--")
    curve.set(xlabel="step", title=key)
    if min(history[key], default=1) > 0:
        curve.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
