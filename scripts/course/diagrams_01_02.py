"""Draw the diagrams of notebooks 01 (VAE) and 02 (perceptual loss) into images/.

    python scripts/course/diagrams_01_02.py

Plain matplotlib boxes and arrows, so the figures can be regenerated and edited like code.
Shapes are those of the shipped VAE (VAEConfig(): 3x64x64 -> 4x8x8) and of LPIPS-AlexNet.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon  # noqa: E402

from ldm_course.course.viz import save_figure  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "images"
BLUE, ORANGE, GREEN, GRAY, RED = "#dbe9f6", "#fde2c4", "#d9f0d3", "#eeeeee", "#f6d0d0"


def box(ax, x, y, w, h, text, color=GRAY, fontsize=10, **kw):
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="#444", lw=1
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, **kw)


def arrow(ax, x0, y0, x1, y1, text=None, dy=0.12, color="#333", style="-|>", ls="-"):
    ax.add_patch(
        FancyArrowPatch(
            (x0, y0), (x1, y1), arrowstyle=style, mutation_scale=12, color=color, lw=1.2, ls=ls
        )
    )
    if text:
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + dy, text, ha="center", va="bottom", fontsize=8.5)


def trapezoid(ax, x, y, w, h_big, h_small, text, color, narrowing=True, fontsize=10):
    """An encoder (narrowing left to right) or decoder (widening) block."""
    yc = y
    left, right = (h_big, h_small) if narrowing else (h_small, h_big)
    pts = [
        (x, yc - left / 2),
        (x + w, yc - right / 2),
        (x + w, yc + right / 2),
        (x, yc + left / 2),
    ]
    ax.add_patch(Polygon(pts, closed=True, fc=color, ec="#444", lw=1))
    ax.text(x + w / 2, yc, text, ha="center", va="center", fontsize=fontsize)


def vae_diagram(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(12.5, 5.0))
    ax.set_xlim(0, 12.5)
    ax.set_ylim(0, 5.0)
    ax.axis("off")
    y = 3.0
    box(ax, 0.1, y - 0.45, 1.1, 0.9, "image $x$\n3 x 64 x 64", BLUE)
    arrow(ax, 1.2, y, 1.45, y)
    trapezoid(
        ax,
        1.45,
        y,
        3.0,
        2.6,
        1.1,
        "Encoder $E$\nconv_in: 3 -> 16 ch\n4 stages of ResBlock,\nstride-2 conv between:\n"
        "64 -> 32 -> 16 -> 8 px\nmid: Res, Attn, Res\nconv_out: -> 8 ch, split\ninto mean and logvar",
        ORANGE,
        fontsize=8,
    )
    arrow(ax, 4.45, y, 4.8, y)
    box(ax, 4.8, y + 0.15, 1.3, 0.7, r"mean $\mu$" + "\n4 x 8 x 8", GREEN, fontsize=9)
    box(ax, 4.8, y - 0.85, 1.3, 0.7, r"logvar $\log\sigma^2$" + "\n4 x 8 x 8", GREEN, fontsize=9)
    ax.text(5.45, y + 1.05, r"$q_\phi(z\,|\,x) = \mathcal{N}(\mu, \mathrm{diag}\,\sigma^2)$",
            ha="center", fontsize=10)  # fmt: skip
    box(ax, 6.5, y - 0.45, 1.55, 0.9, r"$z = \mu + \sigma \odot \varepsilon$" + "\n4 x 8 x 8", RED)
    arrow(ax, 6.1, y + 0.5, 6.5, y + 0.1)
    arrow(ax, 6.1, y - 0.5, 6.5, y - 0.1)
    box(ax, 6.65, 1.45, 1.25, 0.55, r"$\varepsilon \sim \mathcal{N}(0, I)$", GRAY, fontsize=9)
    arrow(ax, 7.275, 2.0, 7.275, y - 0.45)
    ax.text(7.35, 1.2, "reparameterisation", ha="center", va="top", fontsize=8, color="#555")
    arrow(ax, 8.05, y, 8.4, y)
    trapezoid(
        ax,
        8.4,
        y,
        2.6,
        2.6,
        1.1,
        "Decoder $D$\nconv_in, mid block\n4 stages of 2 ResBlocks,\nnearest x2 + conv between:\n"
        "8 -> 16 -> 32 -> 64 px\nconv_out: -> 3 ch",
        ORANGE,
        narrowing=False,
        fontsize=8,
    )
    arrow(ax, 11.0, y, 11.25, y)
    box(ax, 11.25, y - 0.45, 1.15, 0.9, "$\\hat x = D(z)$\n3 x 64 x 64", BLUE)
    ax.text(6.25, 4.75, "training loss = reconstruction + perceptual + tiny KL", ha="center",
            fontsize=11, weight="bold")  # fmt: skip
    ax.text(6.25, 4.4, "64 x 64 x 3 = 12,288 values  ->  8 x 8 x 4 = 256 values (48x fewer)",
            ha="center", fontsize=9, color="#555")  # fmt: skip
    # the loss terms
    box(
        ax,
        8.9,
        0.1,
        3.5,
        0.75,
        r"$|x - \hat x|_1 + \lambda_{\mathrm{P}}\,\mathrm{LPIPS}(x, \hat x)$"
        "\n(reconstruction: notebooks 01, 02)",
        BLUE,
        fontsize=9,
    )
    arrow(ax, 11.8, y - 0.45, 11.8, 0.85, style="-", ls="--", color="#777")
    arrow(ax, 0.65, y - 0.45, 0.65, 0.47, style="-", ls="--", color="#777")
    arrow(ax, 0.65, 0.47, 8.9, 0.47, style="-", ls="--", color="#777")
    box(
        ax,
        3.1,
        1.05,
        2.7,
        0.55,
        r"$\lambda_{\mathrm{KL}}\,\mathrm{KL}(q_\phi(z|x)\,\|\,\mathcal{N}(0, I))$",
        GREEN,
        fontsize=9,
    )
    arrow(ax, 5.45, y - 0.85, 5.45, 1.6, style="-", ls="--", color="#777")
    save_figure(fig, path, dpi=110, facecolor="white")


def lpips_diagram(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(12, 4.4))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 4.4)
    ax.axis("off")
    box(ax, 0.1, 3.0, 1.0, 0.8, "$x$\n3 x H x W", BLUE)
    box(ax, 0.1, 0.5, 1.0, 0.8, "$x_0$\n3 x H x W", BLUE)
    box(ax, 1.5, 1.3, 1.7, 1.7, "frozen\nImageNet CNN\n(AlexNet)\nsame weights\nfor both", ORANGE,
        fontsize=9)  # fmt: skip
    arrow(ax, 1.1, 3.4, 1.5, 2.7)
    arrow(ax, 1.1, 0.9, 1.5, 1.6)
    widths = (64, 192, 384, 256, 256)
    ys = [3.6, 2.95, 2.3, 1.65, 1.0]
    for layer, (c, yy) in enumerate(zip(widths, ys, strict=True), start=1):
        arrow(ax, 3.2, 2.15, 3.6, yy + 0.22, color="#999")
        box(ax, 3.6, yy, 1.75, 0.45, f"relu{layer}: $y^{layer}, y_0^{layer}$ ({c} ch)", GRAY, 8)
        arrow(ax, 5.35, yy + 0.22, 5.6, yy + 0.22)
        box(ax, 5.6, yy, 1.35, 0.45, r"$\hat y = y / \|y\|_{\mathrm{ch}}$", GREEN, 8)
        arrow(ax, 6.95, yy + 0.22, 7.2, yy + 0.22)
        box(ax, 7.2, yy, 1.25, 0.45, r"$(\hat y - \hat y_0)^2$", GRAY, 8)
        arrow(ax, 8.45, yy + 0.22, 8.7, yy + 0.22)
        box(ax, 8.7, yy, 1.15, 0.45, f"1x1 head $w_{layer}$\nmean over h, w", RED, 7.5)
        arrow(ax, 9.85, yy + 0.22, 10.3, 2.3, color="#999")
    box(ax, 10.3, 1.85, 1.6, 0.9, r"$\sum_l$" + "\n" + r"$d(x, x_0)$", BLUE, fontsize=11)
    ax.text(
        6.0,
        0.25,
        r"$d(x, x_0) = \sum_l \frac{1}{H_l W_l} \sum_{h,w} \| w_l \odot (\hat y^l_{hw} - "
        r"\hat y^l_{0,hw}) \|_2^2$   (Zhang et al. 2018, eq. 1)",
        ha="center",
        fontsize=11,
    )
    ax.text(6.0, 4.25, "LPIPS: compare images in the feature space of a trained network",
            ha="center", fontsize=11, weight="bold")  # fmt: skip
    save_figure(fig, path, dpi=110, facecolor="white")


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    vae_diagram(OUT / "01_vae_architecture.png")
    lpips_diagram(OUT / "02_lpips.png")
    print(f"wrote {OUT / '01_vae_architecture.png'} and {OUT / '02_lpips.png'}")
