"""ldm_course.perceptual: LPIPS checked against the stlpips and lpips packages on the same inputs,
against torchvision's own backbone, and against properties every distance should have."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
import urllib.error
from collections.abc import Iterator

import pytest
import torch
import torchvision
from torchvision.transforms.functional import gaussian_blur

from ldm_course import perceptual
from ldm_course.perceptual import (
    LPIPS,
    PretrainedWeightsUnavailable,
    binomial_kernel,
    from_reference_state_dict,
    normalize_channels,
)


def structured_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Colour gradients + a disk + a checkerboard, in [-1, 1]; (n, 3, size, size).

    Shift-tolerant LPIPS barely separates pure noise images, so tests use shapes and edges.
    """
    gen = torch.Generator().manual_seed(seed)
    coords = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (H, W) each
    images = []
    for _ in range(n):
        a, b, colour = (torch.rand(3, 1, 1, generator=gen) * 2 - 1 for _ in range(3))  # (3, 1, 1)
        centre = torch.rand(2, generator=gen) - 0.5
        radius = 0.2 + 0.4 * torch.rand((), generator=gen)
        disk = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < radius**2).float()  # (H, W)
        freq = 4 + 8 * torch.rand((), generator=gen)
        checker = torch.sign(torch.sin(freq * xx) * torch.sin(freq * yy))  # (H, W)
        image = 0.5 * (a * xx + b * yy) + 0.6 * colour * disk + 0.2 * checker  # (3, H, W)
        images.append(image.clamp(-1, 1))
    return torch.stack(images)  # n x (3, H, W) -> (n, 3, H, W)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These tensors are tiny: syncing threads costs more than it saves, above all on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lpips_alex() -> LPIPS:
    return LPIPS("alex", "stlpips")


@pytest.fixture(scope="module")
def stlpips_module() -> Iterator[types.ModuleType]:
    """stlpips_pytorch.stlpips, imported with stubs for torchsummary and IPython it never uses."""
    with pytest.MonkeyPatch.context() as mp:
        torchsummary = types.ModuleType("torchsummary")
        torchsummary.summary = lambda *args, **kwargs: None
        ipython = types.ModuleType("IPython")
        ipython.embed = lambda *args, **kwargs: None
        mp.setitem(sys.modules, "torchsummary", torchsummary)
        mp.setitem(sys.modules, "IPython", ipython)
        from stlpips_pytorch import stlpips

        yield stlpips


@pytest.mark.parametrize("net, size", [("alex", 64), ("vgg", 32)])
def test_matches_stlpips_reference(stlpips_module, net, size):
    reference = stlpips_module.LPIPS(net=net, variant="shift_tolerant", verbose=False).eval()
    ours = LPIPS(net, "stlpips")
    x, x0 = structured_images(2, size, seed=1), structured_images(2, size, seed=2)
    with torch.no_grad():
        expected, expected_layers = reference(x, x0, retPerLayer=True)  # (B, 1, 1, 1), 5 x same
        got_layers = ours.layer_distances(x, x0)  # (B, 5)
    expected_layers = torch.cat([d.flatten(1) for d in expected_layers], dim=1)  # (B, 5)
    # stlpips sums the layers in place into its layer-0 term (val = res[0]; val += res[l]), so
    # its returned layer 0 is the total: recover the true layer-0 term.
    expected_layers[:, 0] -= expected_layers[:, 1:].sum(dim=1)
    assert got_layers.sum(dim=1).min() > 1e-2  # a real distance, so the check is not 0 == 0
    torch.testing.assert_close(got_layers.sum(dim=1), expected.flatten(), atol=1e-5, rtol=0)
    torch.testing.assert_close(got_layers, expected_layers, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # lpips passes torchvision's old `pretrained`
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_architecture_matches_lpips_package(net):
    import lpips

    torch.manual_seed(0)  # pnet_rand=True: a randomly initialised backbone, nothing downloaded
    reference = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    ours = LPIPS(net, "lpips", state_dict=from_reference_state_dict(reference.state_dict()))
    size = 64 if net == "alex" else 32  # alex with stride 4 needs H, W >= 31
    x, x0 = structured_images(2, size, seed=3), structured_images(2, size, seed=4)
    with torch.no_grad():
        expected, expected_layers = reference(x, x0, retPerLayer=True)
        got_layers = ours.layer_distances(x, x0)  # (B, 5)
    expected_layers = torch.cat([d.flatten(1) for d in expected_layers], dim=1)  # (B, 5)
    assert got_layers.sum(dim=1).min() > 1e-3
    torch.testing.assert_close(got_layers.sum(dim=1), expected.flatten(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_layers, expected_layers, atol=1e-5, rtol=1e-5)


def _patch_imagenet_download(monkeypatch, result):
    def get_state_dict(self, *args, **kwargs):
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(torchvision.models.AlexNet_Weights, "get_state_dict", get_state_dict)


def test_lpips_weights_offline_error_names_the_fix(monkeypatch):
    error = urllib.error.URLError("Name or service not known")
    _patch_imagenet_download(monkeypatch, error)
    with pytest.raises(PretrainedWeightsUnavailable, match="weights='stlpips'") as info:
        LPIPS("alex", "lpips")
    assert isinstance(info.value, RuntimeError)
    assert "download" in str(info.value) and "ImageNet" in str(info.value)
    assert info.value.__cause__ is error


def test_lpips_weights_load_torchvision_backbone_and_lpips_heads(monkeypatch):
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None).eval()  # random, torchvision key names
    _patch_imagenet_download(monkeypatch, alexnet.state_dict())
    ours = LPIPS("alex", "lpips")

    heads_file = importlib.util.find_spec("lpips").submodule_search_locations[0]
    heads = torch.load(f"{heads_file}/weights/v0.1/alex.pth", map_location="cpu", weights_only=True)
    for k, head in enumerate(ours.heads):
        torch.testing.assert_close(head.weight, heads[f"lin{k}.model.1.weight"], atol=0, rtol=0)

    x = structured_images(2, 64, seed=5)
    scaled = (x - torch.tensor(perceptual.SHIFT).view(1, 3, 1, 1)) / torch.tensor(
        perceptual.SCALE
    ).view(1, 3, 1, 1)  # (B, 3, H, W)
    with torch.no_grad():
        relu5 = alexnet.features[:12](scaled)  # torchvision's own trunk up to relu5
        torch.testing.assert_close(ours.features(x)[-1], relu5, atol=1e-5, rtol=1e-5)


def test_missing_stlpips_wheel_names_pip_install(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_stlpips(name, *args):
        return None if name == "stlpips_pytorch" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_stlpips)
    with pytest.raises(PretrainedWeightsUnavailable, match="pip install stlpips-pytorch==0.0.2"):
        LPIPS("alex", "stlpips")


def test_identical_images_have_zero_distance(lpips_alex):
    x = structured_images(2, 64, seed=6)
    with torch.no_grad():
        assert lpips_alex(x, x).abs().max() < 1e-7


def test_distance_grows_with_blur(lpips_alex):
    x = structured_images(2, 64, seed=7)
    distances = []
    for sigma in (0.5, 1.0, 2.0):
        kernel_size = 2 * math.ceil(3 * sigma) + 1
        with torch.no_grad():
            distances.append(lpips_alex(x, gaussian_blur(x, kernel_size, sigma)))  # (B,)
    d = torch.stack(distances)  # 3 x (B,) -> (3, B)
    assert (d[0] > 0).all() and (d[1:] > d[:-1]).all(), d


def test_distance_grows_with_noise(lpips_alex):
    x = structured_images(2, 64, seed=8)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        d = torch.stack([lpips_alex(x, (x + std * noise).clamp(-1, 1)) for std in (0.05, 0.1, 0.2)])
    assert (d[0] > 0).all() and (d[1:] > d[:-1]).all(), d  # (3, B)


def test_gradients_reach_the_input_but_not_the_weights(lpips_alex):
    x = structured_images(2, 64, seed=10).requires_grad_()
    x0 = structured_images(2, 64, seed=11)
    lpips_alex.train()  # a parent's .train() must not unfreeze the metric
    lpips_alex(x, x0).sum().backward()
    assert not lpips_alex.training
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in lpips_alex.parameters())


def test_layer_terms_recomputed_from_features(lpips_alex):
    x, x0 = structured_images(2, 64, seed=12), structured_images(2, 64, seed=13)
    with torch.no_grad():
        terms = []
        features, features0 = lpips_alex.features(x), lpips_alex.features(x0)
        for head, y, y0 in zip(lpips_alex.heads, features, features0, strict=True):
            y = y / (y.norm(dim=1, keepdim=True) + 1e-10)  # unit length over channels
            y0 = y0 / (y0.norm(dim=1, keepdim=True) + 1e-10)
            v = head.weight.flatten()  # (C,)
            terms.append(torch.einsum("c,bchw->b", v, (y - y0) ** 2) / y[0, 0].numel())
        layers = lpips_alex.layer_distances(x, x0)  # (B, 5)
        maps = lpips_alex.distance_maps(x, x0)
        total = lpips_alex(x, x0)
    assert [f.shape[1] for f in features] == [64, 192, 384, 256, 256]
    torch.testing.assert_close(layers, torch.stack(terms, dim=1))
    torch.testing.assert_close(layers, torch.stack([m.mean(dim=(1, 2, 3)) for m in maps], 1))
    torch.testing.assert_close(total, layers.sum(dim=1))


def test_normalize_channels_unit_length_and_zero_safe():
    y = torch.randn(2, 5, 4, 4, generator=torch.Generator().manual_seed(14))
    y[0, :, 0, 0] = 0  # a dead feature vector must not become NaN
    y_hat = normalize_channels(y)
    norms = y_hat.norm(dim=1)  # (B, H, W)
    assert norms[0, 0, 0] == 0
    torch.testing.assert_close(norms.flatten()[1:], torch.ones(2 * 16 - 1))


def test_blur_downsample_is_binomial_with_wide_reflect_padding():
    k = binomial_kernel()
    torch.testing.assert_close(k, torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    x = torch.randn(1, 2, 10, 7, generator=torch.Generator().manual_seed(15))
    out = perceptual.BlurDownsample(2)(x)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")  # (1, 2, 14, 11)
    expected = sum(
        k[i, j] * padded[..., i : i + 12 : 2, j : j + 9 : 2] for i in range(3) for j in range(3)
    )
    assert out.shape == (1, 2, 6, 5)  # floor((H + 1) / 2) + 1
    torch.testing.assert_close(out, expected)


def test_reference_keys_are_checked():
    with pytest.raises(ValueError, match="unexpected key"):
        from_reference_state_dict({"net.slice1.0.running_mean": torch.zeros(1)})
    with pytest.raises(ValueError, match="binomial"):
        from_reference_state_dict({"net.slice1.1.filt": torch.ones(64, 1, 5, 5) / 25})


@pytest.mark.parametrize(
    "x, x0, message",
    [
        (torch.zeros(3, 64, 64), torch.zeros(3, 64, 64), r"\(B, 3, H, W\)"),
        (torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64), r"\(B, 3, H, W\)"),
        (torch.zeros(2, 3, 64, 64), torch.zeros(2, 3, 32, 32), "same shape"),
        (torch.zeros(2, 3, 64, 64), torch.full((2, 3, 64, 64), 255.0), r"\[-1, 1\].*127\.5"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.zeros(2, 3, 64, 64), "dtype"),
        (torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8), r"needs H, W >= 21"),
    ],
)
def test_bad_inputs_raise_with_the_fix(lpips_alex, x, x0, message):
    with pytest.raises(ValueError, match=message):
        lpips_alex(x, x0)


@pytest.mark.parametrize(
    "kwargs, allowed",
    [({"net": "resnet"}, "'alex', 'vgg'"), ({"weights": "v0.1"}, "'stlpips', 'lpips'")],
)
def test_unknown_choices_name_the_allowed_values(kwargs, allowed):
    with pytest.raises(ValueError, match=allowed):
        LPIPS(**kwargs)
