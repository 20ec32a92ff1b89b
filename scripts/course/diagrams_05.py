"""Diagrams for notebook 05 (end to end): the whole pipeline and the geometry of guidance.

    python scripts/course/diagrams_05.py            # writes images/pipeline.png and images/05_cfg.png

Pure matplotlib, no model weights: the shapes are those of the default VAEConfig (f = 8, 4 latent
channels at 64x64), the design the course's checkpoints follow.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ldm_course.course.viz import save_figure

OUT = Path(__file__).resolve().parents[2] / "images"
PIXEL, LATENT, MODEL, NOTE = "#dbe9f6", "#fde8c8", "#d9f0d3", "#555555"


def box(ax, x, y, w, h, text, color, *, fontsize=10, weight="normal"):
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            fc=color,
            ec="#333333",
            lw=1.2,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight=weight)


def arrow(ax, x0, y0, x1, y1, text=None, *, dy=0.17, color="#333333", style="-|>", ls="-"):
    ax.add_patch(
        FancyArrowPatch(
            (x0, y0), (x1, y1), arrowstyle=style, mutation_scale=14, color=color, lw=1.4, ls=ls
        )
    )
    if text:
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + dy, text, ha="center", va="bottom", fontsize=9)


def pipeline(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(13, 5.2))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 5.2)
    ax.axis("off")

    # Background bands: pixel space on both ends, latent space in the middle.
    for x0, x1, color, label in (
        (0.1, 2.9, PIXEL, "pixel space\n3 x 64 x 64 = 12,288 values"),
        (2.9, 10.1, LATENT, "latent space\n4 x 8 x 8 = 256 values  (48x fewer)"),
        (10.1, 12.9, PIXEL, "pixel space\n3 x 64 x 64"),
    ):
        ax.add_patch(plt.Rectangle((x0, 0.15), x1 - x0, 4.9, fc=color, ec="none", alpha=0.45))
        ax.text((x0 + x1) / 2, 4.75, label, ha="center", va="top", fontsize=9, color=NOTE)

    y = 2.7
    box(ax, 0.85, y, 1.2, 0.9, "image\n$x$", "white", weight="bold")
    box(ax, 2.35, y, 0.9, 0.9, "$\\mathcal{E}$\nencoder", MODEL)
    box(ax, 4.05, y, 1.5, 0.9, "$z_0 = s\\,\\mathcal{E}(x)$\nscaled latent", "white")
    box(
        ax,
        6.5,
        y,
        2.2,
        1.3,
        "diffusion U-Net\n$\\epsilon_\\theta(z_t, t, y)$\n+ sampler (DDIM)",
        MODEL,
    )
    box(ax, 8.95, y, 1.5, 0.9, "$z_0 / s$\nunscaled latent", "white")
    box(ax, 10.65, y, 0.9, 0.9, "$\\mathcal{D}$\ndecoder", MODEL)
    box(ax, 12.15, y, 1.2, 0.9, "image\n$\\hat x = \\mathcal{D}(z_0 / s)$", "white", fontsize=9)

    arrow(ax, 1.45, y, 1.9, y)
    arrow(ax, 2.8, y, 3.3, y, "$\\times s$")
    arrow(ax, 4.8, y, 5.4, y)
    arrow(ax, 7.6, y, 8.2, y)
    arrow(ax, 9.7, y, 10.2, y, "$\\div s$")
    arrow(ax, 11.1, y, 11.55, y)

    # Training (top) and sampling (bottom) annotations around the U-Net.
    ax.text(
        6.5,
        3.95,
        "training: $z_t = \\sqrt{\\bar\\alpha_t}\\, z_0 + \\sqrt{1-\\bar\\alpha_t}\\, \\epsilon$,"
        "  loss $\\|\\epsilon - \\epsilon_\\theta(z_t, t, y)\\|^2$",
        ha="center",
        va="center",
        fontsize=9.5,
    )
    box(
        ax,
        6.5,
        0.85,
        2.6,
        0.7,
        "$z_T \\sim \\mathcal{N}(0, I)$, class $y$, guidance $w$",
        "white",
        fontsize=9,
    )
    arrow(ax, 6.5, 1.2, 6.5, 2.05)
    ax.text(6.65, 1.55, "sampling", fontsize=9, color=NOTE, ha="left")
    ax.text(
        3.6,
        1.35,
        "$s$ = scale_factor = 1 / std of the training latents:\n"
        "the U-Net sees unit-variance inputs, like its noise",
        fontsize=8.5,
        color=NOTE,
        ha="center",
    )
    ax.text(
        9.9,
        1.35,
        "the decoder runs once per image;\nthe U-Net runs once (twice with CFG) per step",
        fontsize=8.5,
        color=NOTE,
        ha="center",
    )
    ax.set_title(
        "Latent diffusion: compress once with a VAE, diffuse in the small latent space, decode once",
        fontsize=12,
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=110, facecolor="white")


def cfg_geometry(path: Path) -> None:
    """eps_uncond, eps_cond and the guided prediction on the line through them."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    u, c = (2.0, 0.4), (2.6, 1.1)
    d = (c[0] - u[0], c[1] - u[1])
    for w, color in ((0, "C0"), (1, "C2"), (3, "C3"), (5, "C1")):
        p = (u[0] + w * d[0], u[1] + w * d[1])
        ax.annotate(
            "",
            xy=p,
            xytext=(0, 0),
            arrowprops=dict(arrowstyle="-|>", color=color, lw=1.6, alpha=0.9),
        )
        label = {
            0: "$w=0$: $\\epsilon_\\theta(z_t, \\varnothing)$ (unconditional)",
            1: "$w=1$: $\\epsilon_\\theta(z_t, y)$ (conditional)",
            3: "$w=3$: guided",
            5: "$w=5$: stronger guidance",
        }[w]
        ax.plot(*p, "o", color=color)
        ax.text(p[0] + 0.2, p[1], label, fontsize=9, va="center", color=color)
    ends = [(u[0] - 0.5 * d[0], u[1] - 0.5 * d[1]), (u[0] + 5.6 * d[0], u[1] + 5.6 * d[1])]
    ax.plot(*zip(*ends, strict=True), ls="--", color="gray", lw=1)
    ax.annotate(
        "",
        xy=c,
        xytext=u,
        arrowprops=dict(arrowstyle="-|>", color="black", lw=2),
    )
    ax.text(
        (u[0] + c[0]) / 2 + 0.15,
        (u[1] + c[1]) / 2,
        "difference $\\epsilon_\\theta(z_t, y) - \\epsilon_\\theta(z_t, \\varnothing)$",
        fontsize=8,
        ha="left",
        va="center",
    )
    ax.plot(0, 0, "ko")
    ax.text(-0.1, -0.15, "0", fontsize=9, ha="right")
    ax.set_title(
        "$\\tilde\\epsilon = \\epsilon_\\theta(z_t, \\varnothing)"
        " + w\\,[\\epsilon_\\theta(z_t, y) - \\epsilon_\\theta(z_t, \\varnothing)]$",
        fontsize=11,
    )
    ax.set_xlim(-0.3, 9.0)
    ax.set_ylim(-0.4, 4.6)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=110, facecolor="white")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    pipeline(OUT / "pipeline.png")
    cfg_geometry(OUT / "05_cfg.png")
    print(f"wrote {OUT / 'pipeline.png'} and {OUT / '05_cfg.png'}")


if __name__ == "__main__":
    main()
