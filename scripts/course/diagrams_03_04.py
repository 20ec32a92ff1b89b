"""Draw the diagrams of notebooks 03 and 04 into images/ (matplotlib only, no data needed).

python scripts/course/diagrams_03_04.py          # writes images/03_*.png and images/04_*.png
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ldm_course.course.viz import save_figure

OUT = Path(__file__).resolve().parents[2] / "images"

BLUE, ORANGE, GREEN, GREY, PURPLE = "#dbe9f6", "#fde3c8", "#dcf0d5", "#eeeeee", "#e8ddf3"


def box(ax, x, y, w, h, text, color, *, fontsize=10, bold=False):
    """A rounded box centred at (x, y)."""
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            fc=color,
            ec="#444444",
            lw=1.2,
        )
    )
    ax.text(
        x, y, text, ha="center", va="center", fontsize=fontsize, weight="bold" if bold else None
    )


def arrow(
    ax,
    start,
    end,
    text=None,
    *,
    color="#333333",
    offset=(0, 0.18),
    style="-|>",
    ls="-",
    rad=0.0,
    fontsize=9,
):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=14,
            color=color,
            lw=1.4,
            ls=ls,
            connectionstyle=f"arc3,rad={rad}",
        )
    )
    if text:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=fontsize, color=color)


def canvas(w, h, figsize):
    fig, ax = plt.subplots(figsize=figsize)
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.axis("off")
    return fig, ax


def scale_pipeline() -> plt.Figure:
    """03: where the scale factor sits between the autoencoder and the diffusion model."""
    fig, ax = canvas(14, 5.2, (12, 4.4))
    ax.text(0.2, 4.85, "training", fontsize=11, weight="bold", color="#1f4e79")
    ax.text(0.2, 1.95, "sampling", fontsize=11, weight="bold", color="#7a3e00")
    # training row (y = 3.7)
    y = 3.7
    box(ax, 1.2, y, 1.7, 1.0, "image x\n3 x 64 x 64", GREY)
    box(ax, 3.5, y, 1.5, 1.0, "encoder E\n(frozen)", BLUE)
    box(ax, 6.0, y, 2.0, 1.0, "z ~ q(z | x)\n4 x 8 x 8\nstd = σ", BLUE)
    box(ax, 8.6, y, 1.7, 1.0, r"$z_0 = s\,z$" + "\nstd ≈ 1", ORANGE, fontsize=11)
    box(
        ax,
        11.7,
        y,
        3.0,
        1.0,
        r"$z_t=\sqrt{\bar\alpha_t}\,z_0+\sqrt{1-\bar\alpha_t}\,\epsilon$" + "\nU-Net learns ε",
        GREEN,
        fontsize=10,
    )
    arrow(ax, (2.05, y), (2.75, y))
    arrow(ax, (4.25, y), (5.0, y))
    arrow(ax, (7.0, y), (7.75, y), r"$\times\,s$", color="#b35900", fontsize=12)
    arrow(ax, (9.45, y), (10.2, y))
    # sampling row (y = 0.9)
    y = 0.9
    box(ax, 11.7, y, 3.0, 1.0, r"$z_T\sim\mathcal{N}(0, I)$" + "\n→ DDPM / DDIM → $z_0$", GREEN)
    box(ax, 8.6, y, 1.7, 1.0, r"$z_0$" + "\nstd ≈ 1", ORANGE, fontsize=11)
    box(ax, 6.0, y, 2.0, 1.0, r"$z = z_0 / s$" + "\nstd = σ", BLUE, fontsize=11)
    box(ax, 3.5, y, 1.5, 1.0, "decoder D\n(frozen)", BLUE)
    box(ax, 1.2, y, 1.7, 1.0, "image\n3 x 64 x 64", GREY)
    arrow(ax, (10.2, y), (9.45, y))
    arrow(ax, (7.75, y), (7.0, y), r"$\div\,s$", color="#b35900", fontsize=12)
    arrow(ax, (5.0, y), (4.25, y))
    arrow(ax, (2.75, y), (2.05, y))
    ax.text(
        7.0,
        2.35,
        r"scale factor $s = 1/\mathrm{std}(z)$, measured once on training latents"
        "\nand stored with the U-Net: the same $s$ must be used in both rows",
        ha="center",
        va="center",
        fontsize=10,
        color="#b35900",
    )
    fig.tight_layout()
    return fig


def forward_reverse() -> plt.Figure:
    """04: the forward process q and the learned reverse process p_theta on latents."""
    fig, ax = canvas(14, 3.6, (12, 3.1))
    xs = [1.0, 4.2, 7.0, 9.8, 13.0]
    labels = [
        r"$z_0$" + "\n(scaled latent)",
        r"$z_{t-1}$",
        r"$z_t$",
        "...",
        r"$z_T$" + "\n" + r"$\approx\mathcal{N}(0,I)$",
    ]
    colors = [ORANGE, PURPLE, PURPLE, "white", GREEN]
    for x, lab, c in zip(xs, labels, colors, strict=True):
        if lab == "...":
            ax.text(x, 1.8, "...", ha="center", va="center", fontsize=18)
        else:
            box(ax, x, 1.8, 1.7, 1.0, lab, c, fontsize=11)
    arrow(
        ax,
        (1.85, 2.15),
        (3.35, 2.15),
        r"$q(z_t \mid z_{t-1})$: add noise",
        rad=-0.35,
        offset=(0, 0.75),
        color="#1f4e79",
    )
    arrow(ax, (5.05, 2.15), (6.15, 2.15), None, rad=-0.35, color="#1f4e79")
    arrow(ax, (7.85, 2.15), (9.4, 2.15), None, rad=-0.35, color="#1f4e79")
    arrow(ax, (10.2, 2.15), (12.15, 2.15), None, rad=-0.35, color="#1f4e79")
    arrow(
        ax,
        (6.15, 1.45),
        (5.05, 1.45),
        r"$p_\theta(z_{t-1}\mid z_t)$ via $\epsilon_\theta(z_t, t, y)$",
        rad=-0.35,
        offset=(0, -0.78),
        color="#7a3e00",
    )
    arrow(ax, (3.35, 1.45), (1.85, 1.45), None, rad=-0.35, color="#7a3e00")
    arrow(ax, (9.4, 1.45), (7.85, 1.45), None, rad=-0.35, color="#7a3e00")
    arrow(ax, (12.15, 1.45), (10.2, 1.45), None, rad=-0.35, color="#7a3e00")
    ax.text(
        7.0,
        3.4,
        r"in closed form: $q(z_t\mid z_0)=\mathcal{N}(\sqrt{\bar\alpha_t}\,z_0,\ (1-\bar\alpha_t)\,I)$",
        ha="center",
        fontsize=11,
        color="#1f4e79",
    )
    ax.text(
        7.0,
        0.1,
        "DDPM walks back one step at a time (T = 1000); DDIM jumps over many steps deterministically",
        ha="center",
        fontsize=10,
        color="#7a3e00",
    )
    fig.tight_layout()
    return fig


def unet_diagram() -> plt.Figure:
    """04: the U-Net's levels, skips, and where time and class enter."""
    fig, ax = canvas(14, 7.4, (12, 6.3))
    # encoder (left column) and decoder (right column), one row per resolution
    rows = {0: 5.6, 1: 3.9, 2: 2.2}
    res = {0: "8 x 8", 1: "4 x 4", 2: "2 x 2"}
    width = {0: "C", 1: "2C", 2: "2C"}
    box(ax, 2.2, 6.9, 2.6, 0.6, r"$z_t$: 4 x 8 x 8" + "  →  conv_in", GREY, fontsize=10)
    box(ax, 11.8, 6.9, 2.6, 0.6, r"conv_out  →  $\hat\epsilon$: 4 x 8 x 8", GREY, fontsize=10)
    for lvl, y in rows.items():
        attn = " + attention" if lvl > 0 else ""
        box(
            ax,
            2.2,
            y,
            3.0,
            0.9,
            f"level {lvl} ({res[lvl]}, {width[lvl]} ch)\nN x (ResBlock{attn})",
            BLUE,
            fontsize=9.5,
        )
        box(
            ax,
            11.8,
            y,
            3.0,
            0.9,
            f"level {lvl} ({res[lvl]}, {width[lvl]} ch)\n(N+1) x (ResBlock{attn})",
            ORANGE,
            fontsize=9.5,
        )
        arrow(
            ax,
            (3.75, y),
            (10.25, y),
            "skips: concatenate channels",
            color="#888888",
            ls="--",
            offset=(0, 0.17),
        )
    for a, b in ((0, 1), (1, 2)):
        arrow(ax, (2.2, rows[a] - 0.47), (2.2, rows[b] + 0.47), "downsample", offset=(-0.95, 0))
        arrow(ax, (11.8, rows[b] + 0.47), (11.8, rows[a] - 0.47), "upsample", offset=(0.9, 0))
    arrow(ax, (2.2, 6.58), (2.2, rows[0] + 0.47))
    arrow(ax, (11.8, rows[0] + 0.47), (11.8, 6.58))
    box(
        ax,
        7.0,
        0.9,
        4.6,
        0.8,
        "middle (2 x 2): ResBlock → attention → ResBlock",
        GREEN,
        fontsize=9.5,
    )
    arrow(ax, (2.2, rows[2] - 0.47), (4.7, 0.9))
    arrow(ax, (9.3, 0.9), (11.8, rows[2] - 0.47))
    # time / class embedding
    box(
        ax,
        7.0,
        6.75,
        4.2,
        0.9,
        "t → sinusoidal embedding → MLP\n+ class embedding of y (null class for CFG)",
        PURPLE,
        fontsize=9.5,
    )
    ax.text(
        7.0,
        5.95,
        "added to every ResBlock (after its first convolution)",
        ha="center",
        fontsize=9,
        color="#5b2a86",
    )
    ax.text(
        7.0,
        0.15,
        "C = base_channels, N = num_res_blocks (UNetConfig); attention_levels = (1, 2)",
        ha="center",
        fontsize=9,
        color="#444444",
    )
    fig.tight_layout()
    return fig


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, make in (
        ("03_scale_pipeline", scale_pipeline),
        ("04_forward_reverse", forward_reverse),
        ("04_unet", unet_diagram),
    ):
        fig = make()
        save_figure(fig, OUT / f"{name}.png", dpi=110, facecolor="white")
        print(f"wrote {OUT / name}.png")


if __name__ == "__main__":
    main()
