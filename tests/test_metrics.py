import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import structural_similarity

from ldm_course.metrics import (
    FeatureExtractor,
    frechet_distance,
    frechet_distance_from_stats,
    nearest_neighbours,
    psnr,
    ssim,
)


def test_psnr_closed_form():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.2  # on [0, 1]: an error of 0.1 everywhere -> MSE 0.01 -> 20 dB
    y[1, :, :4] += 0.2
    torch.testing.assert_close(
        psnr(x, y), torch.tensor([20.0, 20 + 10 * np.log10(2)], dtype=torch.float64)
    )


def test_ssim_matches_scikit_image(emoji_batch):
    x = emoji_batch[:3]
    y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    ours = ssim(x, y)
    for i in range(3):
        a = ((x[i] + 1) / 2).permute(1, 2, 0).double().numpy()
        b = ((y[i] + 1) / 2).permute(1, 2, 0).double().numpy()
        ref = structural_similarity(
            a,
            b,
            channel_axis=2,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3)


def test_frechet_distance_matches_scipy_and_closed_form():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, generator=gen, dtype=torch.float64)
    b = (
        torch.randn(300, 6, generator=gen, dtype=torch.float64)
        @ torch.randn(6, 6, generator=gen, dtype=torch.float64)
        + 1
    )
    mu1, mu2 = a.mean(0).numpy(), b.mean(0).numpy()
    s1, s2 = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    # diagonal Gaussians: d^2 = |mu1-mu2|^2 + sum (sigma1 - sigma2)^2
    d = frechet_distance_from_stats(
        torch.zeros(2, dtype=torch.float64),
        torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64)),
        torch.ones(2, dtype=torch.float64),
        torch.diag(torch.tensor([1.0, 9.0], dtype=torch.float64)),
    )
    assert d == pytest.approx(2 + (2 - 1) ** 2 + (1 - 3) ** 2)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_feature_distance_orders_degradations(emoji_batch):
    features = FeatureExtractor()
    clean = features(emoji_batch)
    assert clean.shape == (16, 1152)
    noisy = features(
        (
            emoji_batch
            + 0.3 * torch.randn(emoji_batch.shape, generator=torch.Generator().manual_seed(0))
        ).clamp(-1, 1)
    )
    noisier = features(
        (
            emoji_batch
            + 0.8 * torch.randn(emoji_batch.shape, generator=torch.Generator().manual_seed(0))
        ).clamp(-1, 1)
    )
    assert frechet_distance(clean, noisy) < frechet_distance(clean, noisier)


def test_nearest_neighbours_finds_exact_copies(emoji_batch):
    refs = emoji_batch
    queries = emoji_batch[[3, 7]].clone()
    queries[1] = (queries[1] + 0.02).clamp(-1, 1)
    idx, rmse = nearest_neighbours(queries, refs, batch_size=5)
    assert idx.tolist() == [3, 7]
    assert rmse[0] == 0 and 0 < rmse[1] < 0.02
