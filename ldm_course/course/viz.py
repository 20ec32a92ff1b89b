"""Plotting helpers for the notebooks and the CLI. Every function returns a matplotlib Figure."""

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from ldm_course.data import to_uint8
from ldm_course.infra.checkpoint import atomic_write


def grid_array(images: torch.Tensor, *, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> one (H', W', 3) uint8 grid image, white padding."""
    grid = make_grid(
        images.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=padding, pad_value=1.0
    )
    return to_uint8(grid[None])[0]  # (3, H', W') -> (H', W', 3)


def image_grid(
    images: torch.Tensor, *, nrow: int = 8, title: str | None = None, scale: float = 1.0
):
    """A figure showing a grid of images in [-1, 1]."""
    grid = grid_array(images, nrow=nrow)
    h, w = grid.shape[:2]
    fig, ax = plt.subplots(figsize=(scale * w / 80, scale * h / 80 + (0.3 if title else 0)))
    ax.imshow(grid.numpy())
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_grid(images: torch.Tensor, path: str | Path, *, nrow: int = 8) -> None:
    """Write a PNG grid without matplotlib (exact pixels), atomically (checkpoint.atomic_write)."""
    from PIL import Image

    grid = Image.fromarray(grid_array(images, nrow=nrow).numpy())
    atomic_write(path, lambda tmp: grid.save(tmp, format=image_format(path)))


def image_format(path: str | Path) -> str:
    """PIL's format name for a file name's suffix (the temporary file's own suffix is .tmp)."""
    from PIL import Image

    suffix = Path(path).suffix.lower()
    if suffix not in Image.registered_extensions():
        raise ValueError(f"{path}: unknown image type {suffix or '(none)'!r}; use .png or .jpg")
    return Image.registered_extensions()[suffix]


def comparison_layout(originals: torch.Tensor, recons: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Originals above their reconstructions, each in the same column: (images, nrow) for
    `save_grid`. Up to 8 images fill one row each; more fill two rows of ceil(n / 2), the
    odd one out padded with a white tile so nothing shifts."""
    n = len(originals)
    nrow = n if n <= 8 else -(-n // 2)
    cells = nrow * (1 if n <= 8 else 2)
    blank = torch.ones((cells - n, *originals.shape[1:]), dtype=originals.dtype)  # white
    return torch.cat([originals, blank, recons, blank]), nrow  # (2 * cells, 3, H, W)


def reconstructions(
    originals: torch.Tensor, recons: torch.Tensor, *, n: int = 8, title: str | None = None
):
    """Originals in the top row, reconstructions below."""
    pair = torch.cat([originals[:n], recons[:n]])  # (2n, 3, H, W)
    return image_grid(
        pair, nrow=min(n, len(originals)), title=title or "top: originals, bottom: reconstructions"
    )


def latent_channels(z: torch.Tensor, *, n: int = 4, title: str | None = None):
    """Each latent channel of the first n items as an image on one shared, symmetric colour scale
    (blue negative, red positive), with its colour bar; (B, C, h, w)."""
    n = min(n, len(z))
    c = z.shape[1]
    fig, axes = plt.subplots(n, c, figsize=(1.6 * c + 0.9, 1.6 * n), squeeze=False)
    lim = z[:n].abs().max().item()
    for i in range(n):
        for j in range(c):
            image = axes[i][j].imshow(
                z[i, j].detach().cpu().numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim
            )
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if i == 0:
                axes[i][j].set_title(f"channel {j}")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, (1.6 * c) / (1.6 * c + 0.9), 1))
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="latent value")
    return fig


def histograms(z: torch.Tensor, *, bins: int = 60, title: str | None = None):
    """Per-channel histograms of latents (B, C, h, w)."""
    c = z.shape[1]
    fig, axes = plt.subplots(1, c, figsize=(3 * c, 2.6), squeeze=False, sharey=True)
    for j in range(c):
        v = z[:, j].detach().flatten().cpu()
        axes[0][j].hist(v.numpy(), bins=bins, color=f"C{j}", alpha=0.8)
        axes[0][j].set_title(f"ch {j}: mean {v.mean():.2f}, std {v.std():.2f}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(
    history: dict[str, Sequence[float]], *, keys: Sequence[str] | None = None, logy: bool = True
):
    """Loss curves from a training history (the dict `fit` returns); by default every loss term,
    not the step, the seconds or the gradient norm (pass keys=["grad_norm"] to see it)."""
    keys = keys or [k for k in history if k not in ("step", "seconds", "grad_norm")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 2.8), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        ax.plot(history["step"], history[k], color="C0")
        ax.set_title(k)
        ax.set_xlabel("step")
        if logy and min(history[k], default=1) > 0:
            ax.set_yscale("log")
    fig.tight_layout()
    return fig


def plot_schedules(schedules: dict, *, title: str | None = None):
    """alpha_bar_t and log SNR(t) for named NoiseSchedules."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, s in schedules.items():
        a.plot(s.alpha_bar.numpy(), label=name)
        b.plot(torch.log(s.snr).numpy(), label=name)
    a.set(title=r"$\bar\alpha_t$", xlabel="t")
    b.set(title=r"$\log \mathrm{SNR}(t) = \log \bar\alpha_t / (1 - \bar\alpha_t)$", xlabel="t")
    a.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def strip(images: Sequence[torch.Tensor], labels: Sequence[str], *, title: str | None = None):
    """One row per item: a sequence of (B, 3, H, W) snapshots side by side (e.g. a denoising trajectory)."""
    rows, cols = images[0].shape[0], len(images)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.3), squeeze=False)
    for j, (batch, label) in enumerate(zip(images, labels, strict=True)):
        for i in range(rows):
            axes[i][j].imshow(to_uint8(batch[i : i + 1])[0].numpy())
            axes[i][j].axis("off")
        axes[0][j].set_title(label, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, *, dpi: int = 100, facecolor: str = "auto") -> None:
    """Write a figure atomically (checkpoint.atomic_write): a kill or full disk mid-write leaves
    the previous file whole. The format comes from the file name's suffix. Closes the figure."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    kwargs = {"format": fmt, "dpi": dpi, "bbox_inches": "tight", "facecolor": facecolor}
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, **kwargs))
    finally:
        plt.close(fig)


def labelled_grid(
    images: torch.Tensor,
    *,
    nrow: int,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    scale: float = 1.0,
):
    """A grid of images (B, 3, H, W) in [-1, 1], nrow per row, with optional row and column labels."""
    padding = 2
    grid = grid_array(images, nrow=nrow, padding=padding)
    h, w = grid.shape[:2]
    extra_w = 1.6 if row_labels else 0.0
    fig, ax = plt.subplots(figsize=(scale * w / 80 + extra_w, scale * h / 80 + 0.5))
    ax.imshow(grid.numpy())
    cell_h, cell_w = images.shape[-2] + padding, images.shape[-1] + padding
    ax.set_yticks([padding + cell_h * (i + 0.5) for i in range(len(row_labels or []))])
    ax.set_yticklabels(row_labels or [], fontsize=8)
    ax.set_xticks([padding + cell_w * (j + 0.5) for j in range(len(col_labels or []))])
    ax.set_xticklabels(col_labels or [], fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_grids(
    batches: Sequence[torch.Tensor],
    titles: Sequence[str],
    *,
    nrow: int = 4,
    title: str | None = None,
    scale: float = 1.0,
):
    """Several image grids side by side, one per batch (B, 3, H, W), each with its title
    (e.g. the same seeds sampled at several guidance scales)."""
    grids = [grid_array(b, nrow=nrow) for b in batches]
    h, w = grids[0].shape[:2]
    fig, axes = plt.subplots(
        1,
        len(grids),
        figsize=(scale * len(grids) * (w / 80 + 0.2), scale * h / 80 + 0.6),
        squeeze=False,
    )
    for ax, grid, label in zip(axes[0], grids, titles, strict=True):
        ax.imshow(grid.numpy())
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def feature_maps(
    features: Sequence[torch.Tensor],
    *,
    n: int = 6,
    item: int = 0,
    names: Sequence[str] | None = None,
    title: str | None = None,
):
    """One row per layer: the n channels of one item with the largest mean activation, each as an
    image. `features` is a list of (B, C_l, H_l, W_l), e.g. `LPIPS.features(x)`."""
    fig, axes = plt.subplots(
        len(features), n, figsize=(1.25 * n + 0.6, 1.3 * len(features)), squeeze=False
    )
    for i, f in enumerate(features):
        f = f[item].detach().float().cpu()  # (B, C, H, W) -> (C, H, W)
        top = f.mean(dim=(1, 2)).argsort(descending=True)[:n]  # (n,) channel indices
        for j, c in enumerate(top.tolist()):
            axes[i][j].imshow(f[c].numpy(), cmap="magma")
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            axes[i][j].set_title(f"ch {c}", fontsize=7)
        label = names[i] if names else f"layer {i + 1}"
        axes[i][0].set_ylabel(f"{label}\n{f.shape[0]} x {f.shape[1]} x {f.shape[2]}", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
