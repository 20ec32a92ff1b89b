"""LPIPS: a learned perceptual distance between two images (Zhang et al. 2018, eq. 1).

    d(x, x0) = sum_l 1 / (H_l W_l) sum_{h,w} || w_l * (y_hat^l_{hw} - y0_hat^l_{hw}) ||_2^2

The released code (and this file) stores v_l = w_l^2 and computes sum_c v_lc (y_hat - y0_hat)_c^2,
a 1x1 convolution of the squared difference; the two forms are the same distance.

1. Shift and scale the [-1, 1] image to the statistics the backbone was trained on.
2. Run a frozen ImageNet CNN (AlexNet or VGG16) and keep the activations y^l after 5 ReLUs.
3. Scale each feature vector to unit length over channels: y_hat = y / (||y||_2 + eps).
4. Square the difference, weigh channels with a learned 1x1 head (no bias), average over space
   and sum over layers.

Two sets of released weights:
- ``"stlpips"``: shift-tolerant LPIPS (Ghildyal & Liu 2022, "Shift-tolerant Perceptual
  Similarity Metric"). Backbone and heads ship in the wheel ``stlpips-pytorch==0.0.2``, so it
  works offline. Its backbones downsample with BlurPool (Zhang 2019, "Making Convolutional
  Networks Shift-Invariant Again"): max-pool with stride 1, then a stride-2 binomial blur.
- ``"lpips"``: the original LPIPS v0.1 heads (from the ``lpips`` package) on torchvision's
  ImageNet backbone, which torchvision downloads once.

Both reference implementations cut a torchvision-style ``features`` Sequential into slices.
We keep that Sequential whole as ``backbone`` and record the indices of the 5 tapped ReLUs, so
a reference key ``net.slice2.5.weight`` is simply ``backbone.5.weight`` here.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

Net = Literal["alex", "vgg"]
Weights = Literal["stlpips", "lpips"]
NETS: tuple[str, ...] = get_args(Net)
WEIGHTS: tuple[str, ...] = get_args(Weights)

SHIFT = (-0.030, -0.088, -0.188)  # ImageNet mean, mapped from [0, 1] to [-1, 1]
SCALE = (0.458, 0.448, 0.450)  # ImageNet std, doubled for the [-1, 1] range
EPS = 1e-10  # keeps y / ||y|| finite where a feature vector is all zero (dead ReLUs)
MAX_ABS_INPUT = 1.5  # beyond this the image is surely not in [-1, 1] (e.g. [0, 255])
BINOMIAL_3 = (1.0, 2.0, 1.0)  # the released stlpips weights use filt_size=3 (stored filters)
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
STLPIPS_PIP = "pip install stlpips-pytorch==0.0.2"
# Smallest H and W each (net, weights) accepts, found by trying sizes: below it a pooling window or
# a reflect pad is larger than the feature map.
MIN_SIZE = {
    ("alex", "stlpips"): 21,
    ("alex", "lpips"): 31,
    ("vgg", "stlpips"): 18,
    ("vgg", "lpips"): 16,
}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}  # C_l, l = 1..5


class PretrainedWeightsUnavailable(RuntimeError):
    """The released LPIPS weights could not be found or downloaded."""


def normalize_channels(features: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """y_hat = y / (||y||_2 + eps), the norm taken over channels at each pixel (LPIPS eq. 1)."""
    norm = features.pow(2).sum(dim=1, keepdim=True).sqrt()  # (B, C, H, W) -> (B, 1, H, W)
    return features / (norm + eps)  # (B, C, H, W)


def binomial_kernel() -> torch.Tensor:
    """k = a a^T / sum(a a^T) with a = [1, 2, 1]: a 3x3 low-pass filter summing to 1."""
    a = torch.tensor(BINOMIAL_3)
    return torch.outer(a, a) / torch.outer(a, a).sum()  # (3,) x (3,) -> (3, 3)


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect-pad, then a depthwise binomial blur.

    The filter is ``binomial_kernel()``, one copy per channel (Zhang 2019, "BlurPool"). The
    shift-tolerant backbone pads by filt_size - 1 = 2 on every side, more than 'same' padding
    (Ghildyal & Liu 2022), so border pixels are not dropped: H -> floor((H + 1) / 2) + 1.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        kernel = binomial_kernel().expand(channels, 1, 3, 3).clone()  # (3, 3) -> (C, 1, 3, 3)
        self.register_buffer("kernel", kernel, persistent=False)  # a constant, not a weight
        self.pad = len(BINOMIAL_3) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad,) * 4, mode="reflect")  # (B, C, H, W) -> (B, C, H + 4, W + 4)
        return F.conv2d(x, self.kernel, stride=2, groups=x.shape[1])  # -> (B, C, H', W')


def _alexnet_layers(shift_tolerant: bool) -> tuple[list[nn.Module], tuple[int, ...]]:
    """AlexNet's conv trunk (torchvision, or stlpips' 'shift_tolerant' variant) and its taps."""
    if not shift_tolerant:  # torchvision.models.alexnet().features[:12]
        layers = [
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),  # 0, 1: relu1
            nn.MaxPool2d(3, stride=2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 2-4: relu2
            nn.MaxPool2d(3, stride=2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 5-7: relu3
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 8, 9: relu4
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 10, 11: relu5
        ]  # fmt: skip
        return layers, (1, 4, 7, 9, 11)
    # Strides of 4 and 2 become stride 1 followed by a blur-then-subsample.
    layers = [
        nn.Conv2d(3, 64, 11, stride=1, padding=2), BlurDownsample(64), nn.ReLU(),  # 0-2: relu1
        nn.MaxPool2d(3, stride=1), BlurDownsample(64),  # 3, 4
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 5, 6: relu2
        nn.MaxPool2d(3, stride=1), BlurDownsample(192),  # 7, 8
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 9, 10: relu3
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 11, 12: relu4
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 13, 14: relu5
    ]  # fmt: skip
    return layers, (2, 6, 10, 12, 14)


def _vgg16_layers(shift_tolerant: bool) -> tuple[list[nn.Module], tuple[int, ...]]:
    """VGG16's conv trunk up to relu5_3; taps are relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
    layers: list[nn.Module] = []
    taps: list[int] = []
    in_channels = 3
    for item in VGG16_CONFIG:
        if item == "M":
            taps.append(len(layers) - 1)  # the ReLU just before each pooling
            if shift_tolerant:
                layers += [nn.MaxPool2d(2, stride=1), BlurDownsample(in_channels)]
            else:
                layers += [nn.MaxPool2d(2, stride=2)]
        else:
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU()]
            in_channels = int(item)
    taps.append(len(layers) - 1)  # relu5_3
    return layers, tuple(taps)


def from_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename keys of lpips / stlpips / torchvision checkpoints to this module's keys.

    ``net.slice{k}.{i}.*`` (lpips, stlpips) and ``features.{i}.*`` (torchvision) ->
    ``backbone.{i}.*``; ``lin{k}.model.1.weight`` -> ``heads.{k}.weight`` (lpips lists each head
    twice, also as ``lins.{k}``). The constants (scaling layer, blur filters) are checked against
    ours and dropped, as is a torchvision classifier.
    """
    blur = binomial_kernel()  # (3, 3)
    constants = {"shift": torch.tensor(SHIFT), "scale": torch.tensor(SCALE)}
    renamed = {}
    for key, value in state_dict.items():
        if match := re.fullmatch(r"(?:net\.slice\d+|features)\.(\d+)\.(weight|bias)", key):
            renamed[f"backbone.{match[1]}.{match[2]}"] = value
        elif match := re.fullmatch(r"lin(?:s\.)?(\d+)\.model\.\d+\.weight", key):  # lin2, lins.2
            renamed[f"heads.{match[1]}.weight"] = value
        elif match := re.fullmatch(r"scaling_layer\.(shift|scale)", key):
            if not torch.allclose(value.flatten().cpu(), constants[match[1]]):
                raise ValueError(f"{key} = {value.flatten().tolist()} differs from LPIPS v0.1")
        elif key.endswith(".filt"):  # (C, 1, k, k) blur filter of a Downsample layer
            if value.shape[-2:] != blur.shape or not torch.allclose(value.cpu(), blur):
                raise ValueError(f"{key} is not the 3x3 binomial blur that BlurDownsample uses")
        elif not key.startswith("classifier."):
            raise ValueError(f"unexpected key {key!r} in an LPIPS reference state dict")
    return renamed


def _package_dir(package: str, install: str) -> Path:
    # find_spec locates a top-level package without importing it (stlpips_pytorch's modules
    # import torchsummary and IPython, which we do not need).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedWeightsUnavailable(f"the {package!r} package is not installed: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _imagenet_backbone(net: Net) -> dict[str, torch.Tensor]:
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1 if net == "alex" else VGG16_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(
            progress=False, check_hash=True, map_location="cpu", weights_only=True
        )
    except OSError as err:  # URLError, HTTPError, socket errors and full disks are all OSError
        raise PretrainedWeightsUnavailable(
            f"could not download torchvision's ImageNet {net} backbone for weights='lpips' from "
            f"{weights.url} ({type(err).__name__}: {err}). Offline, use weights='stlpips', "
            "whose backbone and heads ship inside the stlpips-pytorch wheel."
        ) from err


def load_released_state_dict(net: Net, weights: Weights) -> dict[str, torch.Tensor]:
    """Released weights for ``LPIPS(net, weights)``, with this module's key names."""
    if weights == "stlpips":  # one file: backbone and heads
        install = STLPIPS_PIP
        folder = _package_dir("stlpips_pytorch", install) / "weights" / "vST0.0"
        file = folder / f"{net}_shift_tolerant.pth"
        state_dict = {}
    else:  # heads from the lpips package, backbone from torchvision
        install = "pip install lpips"
        file = _package_dir("lpips", install) / "weights" / "v0.1" / f"{net}.pth"
        state_dict = _imagenet_backbone(net)
    if not file.is_file():
        raise PretrainedWeightsUnavailable(f"{file} is missing; reinstall with: {install}")
    state_dict.update(torch.load(file, map_location="cpu", weights_only=True))
    return from_reference_state_dict(state_dict)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, frozen, for images in [-1, 1].

    ``LPIPS(net, weights)(x, x0)`` returns d(x, x0) of shape (B,) (Zhang et al. 2018, eq. 1);
    ``layer_distances`` gives the 5 terms of the sum, ``distance_maps`` the maps before the
    spatial mean and ``features`` the raw activations y^l. Gradients flow to the inputs, so it
    can be used as a training loss; its own parameters never train.

    ``state_dict`` (keyword-only) loads these weights instead of the released ones, with keys as
    in ``self.state_dict()`` (see ``from_reference_state_dict``); nothing is read or downloaded.
    ``check_range=False`` skips the [-1, 1] range check: for a training loss on a decoder's raw
    output, which may overshoot while it learns (the check is for user-supplied images).
    """

    def __init__(
        self,
        net: Net = "alex",
        weights: Weights = "stlpips",
        *,
        state_dict: Mapping[str, torch.Tensor] | None = None,
        check_range: bool = True,
    ) -> None:
        if net not in NETS:
            raise ValueError(f"net must be one of {NETS}, got {net!r}")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
        super().__init__()
        self.net, self.weights, self.check_range = net, weights, check_range
        build = _alexnet_layers if net == "alex" else _vgg16_layers
        layers, self.taps = build(shift_tolerant=weights == "stlpips")
        self.backbone = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[net])  # v_l
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        if state_dict is None:
            state_dict = load_released_state_dict(net, weights)
        self.load_state_dict(state_dict)  # strict: every weight must be present and used
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        """Stay in eval mode when a parent model calls ``.train()``: the metric is frozen."""
        return super().train(False)

    def extra_repr(self) -> str:
        return f"net={self.net!r}, weights={self.weights!r}"

    def _check_image(self, x: torch.Tensor, name: str) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"{name} must be an RGB batch of shape (B, 3, H, W), got {tuple(x.shape)}; "
                "add a batch axis with x[None] or repeat grayscale with x.expand(-1, 3, -1, -1)"
            )
        if min(x.shape[-2:]) < (min_size := MIN_SIZE[self.net, self.weights]):
            raise ValueError(
                f"{name} is {x.shape[-2]}x{x.shape[-1]} but LPIPS(net={self.net!r}, "
                f"weights={self.weights!r}) needs H, W >= {min_size}; upsample first, e.g. "
                f"F.interpolate(x, size=({min_size}, {min_size}), mode='bilinear')"
            )
        if not x.is_floating_point():
            raise ValueError(f"{name} has dtype {x.dtype}; convert with x.float() / 127.5 - 1")
        # half and bfloat16 are promoted exactly by the normalisation; float64 would not fit
        if torch.promote_types(x.dtype, self.shift.dtype) != self.shift.dtype:
            raise ValueError(
                f"{name} is {x.dtype} but LPIPS runs in {self.shift.dtype}; convert with "
                f"{name}.to({self.shift.dtype}) (or the metric with .to({x.dtype}))"
            )
        if self.check_range and x.numel() and x.detach().abs().max() > MAX_ABS_INPUT:
            low, high = x.detach().aminmax()
            raise ValueError(
                f"{name} has values in [{low:.3g}, {high:.3g}] but LPIPS expects [-1, 1]; "
                "rescale [0, 255] images with x / 127.5 - 1 and [0, 1] images with 2 * x - 1"
            )

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale  # (B, 3, H, W), ImageNet-normalised
        taps = []
        for index, layer in enumerate(self.backbone):
            h = layer(h)
            if index in self.taps:
                taps.append(h)  # (B, C_l, H_l, W_l)
        return taps

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw activations y^l of the 5 tapped ReLUs, each (B, C_l, H_l, W_l); x in [-1, 1]."""
        self._check_image(x, "x")
        return self._features(x)

    def distance_maps(self, x: torch.Tensor, x0: torch.Tensor) -> list[torch.Tensor]:
        """Per-pixel terms v_l . (y_hat^l - y0_hat^l)^2 of eq. 1, each (B, 1, H_l, W_l)."""
        self._check_image(x, "x")
        self._check_image(x0, "x0")
        if x.shape != x0.shape:
            raise ValueError(
                f"x and x0 must have the same shape, got {tuple(x.shape)} and {tuple(x0.shape)}; "
                "resize one of them first (e.g. F.interpolate(x, size=x0.shape[-2:]))"
            )
        maps = []
        for head, y, y0 in zip(self.heads, self._features(x), self._features(x0), strict=True):
            squared = (normalize_channels(y) - normalize_channels(y0)) ** 2  # (B, C_l, H_l, W_l)
            maps.append(head(squared))  # 1x1 conv: (B, C_l, H_l, W_l) -> (B, 1, H_l, W_l)
        return maps

    def layer_distances(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The 5 terms of eq. 1 (spatial means of ``distance_maps``), shape (B, 5)."""
        means = [m.mean(dim=(1, 2, 3)) for m in self.distance_maps(x, x0)]  # 5 x (B,)
        return torch.stack(means, dim=1)  # 5 x (B,) -> (B, 5)

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """d(x, x0) = sum over layers of ``layer_distances``, shape (B,). Inputs (B, 3, H, W)."""
        return self.layer_distances(x, x0).sum(dim=1)  # (B, 5) -> (B,)
