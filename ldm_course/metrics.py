"""Image-quality metrics on [-1, 1] images (a small overshoot is clamped, other ranges refused:
`_to_unit`), reported on the [0, 1] scale, one value per image;
and a Frechet distance between sets of images in the feature space of an offline network."""

import math

import torch
import torch.nn.functional as F

from ldm_course.perceptual import LPIPS

OVERSHOOT = 2.0  # |x| up to this is a [-1, 1] image that overshoots; beyond, another range


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] as (x + 1) / 2, clamped to [0, 1].

    The clamp is for the small overshoot of raw decoder output (a notebook passes vae.decode(z)
    as it is, slightly outside [-1, 1]): values with |x| <= OVERSHOOT are accepted and clamped.
    Anything further out is not a [-1, 1] image (a [0, 255] image, say) and is refused, as are
    NaN and inf, rather than clamped into a plausible-looking number."""
    x = x.detach().double()
    if x.numel():
        lo, hi = torch.aminmax(x)
        lo, hi = torch.stack([lo, hi]).tolist()  # one transfer
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(
                "the images hold NaN or inf values (a diverged model?); pass finite images in [-1, 1]"
            )
        if max(-lo, hi) > OVERSHOOT:
            hint = (
                "looks like [0, 255]; pass images in [-1, 1] (x / 127.5 - 1)"
                if lo >= 0 and hi <= 255
                else "pass images in [-1, 1]"
            )
            raise ValueError(
                f"the images range over [{lo:.4g}, {hi:.4g}], far outside [-1, 1] (up to "
                f"|x| = {OVERSHOOT:g} is clamped as overshoot): {hint}"
            )
    return ((x + 1) / 2).clamp(0, 1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR = 10 log10(1 / MSE) on the [0, 1] scale, per image: (B, C, H, W) x 2 -> (B,)."""
    if x.shape != y.shape:
        raise ValueError(f"psnr needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (_to_unit(x) - _to_unit(y)).pow(2).flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-20))


def gaussian_kernel(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian (size,), float64. SSIM's 2-D window (Wang et al. 2004, sec. III-C)
    is its outer product, so filtering along rows then columns applies it exactly."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM (Wang et al. 2004, eq. 13) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
    K2 = 0.03, data range 1, 'valid' windows only, averaged over channels and positions: (B,)."""
    if x.shape != y.shape:
        raise ValueError(f"ssim needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window:
        raise ValueError(
            f"images of size {tuple(x.shape[-2:])} are smaller than the SSIM window {window}"
        )
    x, y = _to_unit(x), _to_unit(y)
    c = x.shape[1]
    g = gaussian_kernel(window, sigma).to(x.device)
    rows, cols = (
        g.view(1, 1, window, 1).expand(c, 1, window, 1),
        g.view(1, 1, 1, window).expand(c, 1, 1, window),
    )

    def blur(v):  # separable: (B, C, H, W) -> (B, C, H-k+1, W-k+1)
        return F.conv2d(F.conv2d(v, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2)
    )
    return s.flatten(1).mean(1)  # (B,)


class FeatureExtractor(torch.nn.Module):
    """Image -> 1152-d feature: the five ReLU layers of the shift-tolerant AlexNet (the ImageNet-
    trained backbone shipped with stlpips-pytorch, so it runs offline), each spatially averaged and
    concatenated (64 + 192 + 384 + 256 + 256). Stands in for FID's Inception-v3, whose
    weights need a download; distances are comparable with each other, not with published FIDs."""

    def __init__(self, lpips: LPIPS | None = None):
        super().__init__()
        self.lpips = lpips or LPIPS("alex", "stlpips")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.lpips.features(x.clamp(-1, 1))  # 5 x (B, C_l, H_l, W_l)
        return torch.cat([f.mean(dim=(2, 3)) for f in feats], dim=1).double()  # (B, sum C_l)

    def batched(self, x: torch.Tensor, *, batch_size: int = 128) -> torch.Tensor:
        return torch.cat([self(b) for b in x.split(batch_size)])


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix via its eigendecomposition."""
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) (Dowson & Landau 1982; FID, Heusel et al.
    2017). Tr (S1 S2)^{1/2} = Tr (S1^{1/2} S2 S1^{1/2})^{1/2}, a symmetric PSD form."""
    root1 = sqrtm_psd(sigma1)
    covmean_trace = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp_min(0).sqrt().sum()
    d2 = (mu1 - mu2).pow(2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * covmean_trace
    return float(d2)


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D)."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N_a, D), (N_b, D)."""
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature widths differ: {features_a.shape[1]} vs {features_b.shape[1]}")
    if min(len(features_a), len(features_b)) < 2:
        raise ValueError("each set needs at least 2 images to estimate a covariance")
    return frechet_distance_from_stats(*feature_stats(features_a), *feature_stats(features_b))


@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, references: torch.Tensor, *, batch_size: int = 512):
    """For each query image, the index of and the RMSE ([0, 1] scale) to the nearest reference image.
    (N_q, 3, H, W), (N_r, 3, H, W) -> (N_q,) long, (N_q,) float."""
    q = _to_unit(queries).flatten(1).float()  # (N_q, D)
    best_d = torch.full((len(q),), math.inf)
    best_i = torch.zeros(len(q), dtype=torch.long)
    for start in range(0, len(references), batch_size):
        r = _to_unit(references[start : start + batch_size]).flatten(1).float()  # (b, D)
        d, i = torch.cdist(q, r).min(dim=1)  # (N_q,)
        better = d < best_d
        best_d[better], best_i[better] = d[better], i[better] + start
    return best_i, best_d / math.sqrt(q.shape[1])
