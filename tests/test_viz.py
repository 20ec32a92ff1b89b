"""Every plotting helper returns a figure of the expected layout, and grids keep exact pixels."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ldm_course.course import viz  # noqa: E402
from ldm_course.schedules import make_schedule  # noqa: E402

IMGS = torch.linspace(-1, 1, 6 * 3 * 8 * 8).view(6, 3, 8, 8)


def test_grid_array_and_save_grid_keep_pixels(tmp_path):
    grid = viz.grid_array(
        torch.stack([-torch.ones(3, 8, 8), torch.ones(3, 8, 8)]), nrow=2, padding=0
    )
    assert grid.shape == (8, 16, 3) and grid.dtype == torch.uint8
    assert grid[0, 0, 0] == 0 and grid[-1, -1, -1] == 255  # -1 -> 0, +1 -> 255
    viz.save_grid(IMGS, tmp_path / "g.png", nrow=3)
    assert Image.open(tmp_path / "g.png").size == (3 * 10 + 2, 2 * 10 + 2)


@pytest.mark.parametrize(
    ("make", "axes"),
    [
        (lambda: viz.image_grid(IMGS, nrow=3, title="t"), 1),
        (lambda: viz.reconstructions(IMGS, IMGS, n=3), 1),
        (lambda: viz.latent_channels(torch.randn(2, 4, 8, 8), n=2), 9),  # 8 maps and the colour bar
        (lambda: viz.histograms(torch.randn(5, 4, 8, 8)), 4),
        (
            lambda: viz.plot_history(
                {"step": [1, 2], "seconds": [0, 1], "loss": [1.0, 0.5], "kl": [0.1, 0.2]}
            ),
            2,
        ),
        (
            lambda: viz.plot_schedules(
                {"linear": make_schedule("linear"), "cosine": make_schedule("cosine")}
            ),
            2,
        ),
        (lambda: viz.strip([IMGS[:2], IMGS[2:4], IMGS[4:]], ["a", "b", "c"]), 6),
        (
            lambda: viz.labelled_grid(
                IMGS, nrow=3, row_labels=["r1", "r2"], col_labels=["a", "b", "c"]
            ),
            None,
        ),
        (lambda: viz.image_grids([IMGS[:4], IMGS[2:]], ["x", "y"], nrow=2), 2),
        (lambda: viz.feature_maps([torch.rand(1, 8, 6, 6), torch.rand(1, 4, 3, 3)], n=3), None),
    ],
)
def test_helpers_return_figures(make, axes):
    fig = make()
    assert isinstance(fig, plt.Figure)
    if axes is not None:
        assert len(fig.axes) == axes
    plt.close(fig)


def test_latent_channels_has_one_shared_colour_bar():
    fig = viz.latent_channels(torch.randn(2, 4, 8, 8), n=2)
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "latent value"]
    assert len(fig.axes) == 2 * 4 + 1 and len(bars) == 1
    lo, hi = fig.axes[0].images[0].get_clim()
    assert lo == -hi  # symmetric: white is zero
    plt.close(fig)
