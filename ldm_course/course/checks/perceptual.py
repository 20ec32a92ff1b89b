"""Checks for notebook 02 (perceptual loss): channel normalisation, the LPIPS distance and the
discriminator's hinge loss."""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ldm_course.course.checks.core import CheckResult, Misconception, check_function
from ldm_course.course.checks.time_limit import TIME_LIMIT
from ldm_course.discriminator import hinge_d_loss
from ldm_course.perceptual import normalize_channels

# ---- channel normalisation ----


def reference_normalize_channels(features):
    return normalize_channels(features)


SEE_NORM = "see 'Exercise 1: channel normalisation' in section 2"

NORMALIZE_MISCONCEPTIONS = (
    Misconception(
        "the eps left out",
        f"a dead pixel (all channels 0) gives 0 / 0 = nan; divide by (norm + 1e-10): {SEE_NORM}",
        lambda features: features / features.pow(2).sum(dim=1, keepdim=True).sqrt(),
    ),
    Misconception(
        "the norm over the whole tensor",
        f"each pixel's feature vector gets unit length: the norm runs over channels only (dim=1, keepdim=True): {SEE_NORM}",
        lambda features: features / (features.norm() + 1e-10),
    ),
    Misconception(
        "the norm over space instead of channels",
        f"the norm runs over channels (dim=1), one per pixel, not over height and width: {SEE_NORM}",
        lambda features: features / (features.pow(2).sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10),
    ),
    Misconception(
        "the squared norm",
        f"divide by the length sqrt(sum of squares), not the sum of squares: {SEE_NORM}",
        lambda features: features / (features.pow(2).sum(dim=1, keepdim=True) + 1e-10),
    ),
    Misconception(
        "the L1 norm",
        f"the length is the L2 norm sqrt(sum over channels of y^2), not the sum of |y|: {SEE_NORM}",
        lambda features: features / (features.abs().sum(dim=1, keepdim=True) + 1e-10),
    ),
)


def check_normalize_channels(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(features (B, C, H, W)) -> features / (sqrt(sum over C of features^2) + 1e-10). Every case
    has dead pixels (all channels 0), where the eps keeps the result 0 instead of nan."""

    def inputs(gen):
        features = torch.relu(torch.randn(2, 16, 6, 6, generator=gen)) * 5
        features[:, :, 0, :2] = 0  # dead pixels
        return {"features": features}

    return check_function(
        "normalize_channels",
        fn,
        reference_normalize_channels,
        inputs,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=NORMALIZE_MISCONCEPTIONS,
    )


# ---- the LPIPS distance ----


def reference_lpips_distance(features_x, features_y, head_weights):
    total = 0
    for fx, fy, w in zip(features_x, features_y, head_weights, strict=True):
        d = (normalize_channels(fx) - normalize_channels(fy)) ** 2  # (B, C, H, W)
        total = total + F.conv2d(d, w).mean(dim=(1, 2, 3))  # (B,)
    return total


def _wrong_lpips(
    *,
    diff=lambda a, b: (a - b) ** 2,
    norm=normalize_channels,
    head=None,
    space="mean",
    layers="sum",
):
    """An LPIPS distance built like the reference with one piece replaced."""

    def fn(features_x, features_y, head_weights):
        per_layer = []
        for fx, fy, w in zip(features_x, features_y, head_weights, strict=True):
            d = diff(norm(fx), norm(fy))  # (B, C, H, W)
            weighted = F.conv2d(d, w) if head is None else head(d, w)  # (B, 1, H, W)
            reduce = weighted.mean if space == "mean" else weighted.sum
            per_layer.append(reduce(dim=(1, 2, 3)))  # (B,)
        stacked = torch.stack(per_layer)  # (L, B)
        return stacked.sum(0) if layers == "sum" else stacked.mean(0)

    return fn


SEE_LPIPS = "see LPIPS eq. 1 and 'Exercise 2: the full distance' in section 2"

LPIPS_MISCONCEPTIONS = (
    Misconception(
        "the difference not squared",
        f"LPIPS weighs the squared difference (y_hat_x - y_hat_y)^2 of normalised features: {SEE_LPIPS}",
        _wrong_lpips(diff=lambda a, b: (a - b).abs()),
    ),
    Misconception(
        "a sum over space instead of the spatial mean",
        f"each layer's map is averaged over its H_l x W_l positions (.mean(dim=(1, 2, 3))), so layers of every size count alike: {SEE_LPIPS}",
        _wrong_lpips(space="sum"),
    ),
    Misconception(
        "the heads not applied",
        f"weigh the channels with each layer's head: F.conv2d(squared difference, head_weights[l]): {SEE_LPIPS}",
        _wrong_lpips(head=lambda d, w: d.sum(dim=1, keepdim=True)),
        variants=(_wrong_lpips(head=lambda d, w: d.mean(dim=1, keepdim=True)),),
    ),
    Misconception(
        "the head weights squared",
        f"head_weights already hold v_l = w_l^2; apply them as they are: {SEE_LPIPS}",
        _wrong_lpips(head=lambda d, w: F.conv2d(d, w**2)),
    ),
    Misconception(
        "the features not normalised",
        f"normalise each layer's features over channels first (Exercise 1): {SEE_LPIPS}",
        _wrong_lpips(norm=lambda f: f),
    ),
    Misconception(
        "a mean over layers instead of a sum",
        f"LPIPS sums the five layer distances: {SEE_LPIPS}",
        _wrong_lpips(layers="mean"),
    ),
)


def check_lpips_distance(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(features_x, features_y, head_weights) -> (B,): sum over layers of the spatial mean of
    w_l . (normalised f_x - normalised f_y)^2 (LPIPS eq. 1)."""

    def inputs(gen):
        widths = (8, 16, 32)
        fx = [
            torch.relu(torch.randn(2, c, 16 // 2**i, 16 // 2**i, generator=gen))
            for i, c in enumerate(widths)
        ]
        fy = [torch.relu(torch.randn(f.shape, generator=gen)) for f in fx]
        heads = [torch.rand(1, c, 1, 1, generator=gen) for c in widths]
        return {"features_x": fx, "features_y": fy, "head_weights": heads}

    return check_function(
        "lpips_distance",
        fn,
        reference_lpips_distance,
        inputs,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=LPIPS_MISCONCEPTIONS,
    )


# ---- the discriminator's hinge loss ----


def reference_hinge_d_loss(logits_real, logits_fake):
    return hinge_d_loss(logits_real, logits_fake)


SEE_HINGE = "see 'Exercise 3: the hinge loss' in section 5"

HINGE_MISCONCEPTIONS = (
    Misconception(
        "the relu left out (a Wasserstein-style loss)",
        f"max(0, .) stops rewarding logits already beyond the margin: relu(1 - real) and relu(1 + fake): {SEE_HINGE}",
        lambda logits_real, logits_fake: (
            0.5 * ((1 - logits_real).mean() + (1 + logits_fake).mean())
        ),
    ),
    Misconception(
        "real and fake swapped",
        f"real logits are pushed above +1 (relu(1 - real)), fake ones below -1 (relu(1 + fake)): {SEE_HINGE}",
        lambda logits_real, logits_fake: hinge_d_loss(logits_fake, logits_real),
    ),
    Misconception(
        "the missing 1/2",
        f"L_D = 1/2 (mean relu(1 - real) + mean relu(1 + fake)): {SEE_HINGE}",
        lambda logits_real, logits_fake: 2 * hinge_d_loss(logits_real, logits_fake),
    ),
    Misconception(
        "the margin left out",
        f"the hinge has a margin of 1: relu(1 - real), not relu(-real): {SEE_HINGE}",
        lambda logits_real, logits_fake: (
            0.5 * (F.relu(-logits_real).mean() + F.relu(logits_fake).mean())
        ),
    ),
    Misconception(
        "the non-saturating (softplus) loss",
        f"this exercise is the hinge loss, relu(1 - real) and relu(1 + fake), not softplus: {SEE_HINGE}",
        lambda logits_real, logits_fake: (
            0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())
        ),
    ),
)


def check_hinge_d_loss(
    fn: Callable,
    *,
    quiet: bool = False,
    time_limit: float | None = TIME_LIMIT,
) -> CheckResult:
    """fn(logits_real, logits_fake), each (B, 1, h, w) -> the scalar
    1/2 (mean of max(0, 1 - logits_real) + mean of max(0, 1 + logits_fake))."""

    def inputs(gen):
        # spread wide enough that many logits lie beyond the margins, where max(0, .) matters
        return {
            "logits_real": torch.randn(4, 1, 6, 6, generator=gen) * 2 + 0.5,
            "logits_fake": torch.randn(4, 1, 6, 6, generator=gen) * 2 - 0.5,
        }

    return check_function(
        "hinge_d_loss",
        fn,
        reference_hinge_d_loss,
        inputs,
        quiet=quiet,
        time_limit=time_limit,
        misconceptions=HINGE_MISCONCEPTIONS,
    )
