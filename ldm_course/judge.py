"""A recognisability score: does a class-conditional sample look like the class it was asked for?

A small classifier (the *judge*) is trained on the real train split. For a generator conditioned on
class c, the hit rate is the fraction of its samples the judge assigns to c; the judge's own
held-out accuracy on the real test images of class c is the *ceiling* (it cannot do better on
samples than on real images of that class). The score is the Classification Accuracy Score family
(Ravuri & Vinyals 2019), normalised per class:

    hit_c     = P( judge(x) = c | x ~ p_model(x | c) )
    ceiling_c = P( judge(x) = c | x a real test image of class c )
    score     = (1 / |C|) * sum_{c in C} hit_c / ceiling_c

C holds the classes with test images and a non-zero ceiling. Real test images score exactly 1 by
construction; samples that ignore their label score about chance, 1 / |C| / mean ceiling.

What it cannot see: a judge rewards what separates the classes, not what makes an image good. A
class-typical blob (the right palette and silhouette, no features) can fool it, and a model that
copies its training set scores well. Report it beside near copies and diversity, never alone.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ldm_course.infra.checkpoint import load_tensors, load_weights


@dataclass(frozen=True)
class JudgeConfig:
    num_classes: int = 10
    size: int = 64  # input images (3, size, size) in [-1, 1]
    channels: tuple[int, ...] = (
        24,
        48,
        96,
        192,
    )  # stem, then one stride-2 stage per entry after it
    norm_groups: int = 8


class Judge(nn.Module):
    """A plain CNN: conv stem, stride-2 stages of two 3x3 convs (GroupNorm, SiLU), global average
    pooling, one linear layer. About 0.65 M parameters with the defaults. No flips anywhere: a
    mirrored flag or letter is another sign."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        layers = [nn.Conv2d(3, c[0], 3, padding=1), nn.GroupNorm(cfg.norm_groups, c[0]), nn.SiLU()]
        for c_in, c_out in zip(c[:-1], c[1:], strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.GroupNorm(cfg.norm_groups, c_out),
                nn.SiLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
                nn.GroupNorm(cfg.norm_groups, c_out),
                nn.SiLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c[-1], cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, size, size) in [-1, 1] -> logits (B, num_classes)."""
        if x.ndim != 4 or x.shape[1:] != (3, self.cfg.size, self.cfg.size):
            raise ValueError(
                f"the judge takes images (B, 3, {self.cfg.size}, {self.cfg.size}), got "
                f"{tuple(x.shape)}; resize with ldm_course.data.resize first"
            )
        h = self.features(x)  # (B, C, size / 2^k, size / 2^k)
        return self.head(h.mean(dim=(2, 3)))  # (B, num_classes)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """(N, 3, size, size) in [-1, 1] -> (N,) predicted class ids, in eval mode, on the judge's
        device."""
        if images.numel() and (images.min() < -1.001 or images.max() > 1.001):
            raise ValueError(
                f"images must be in [-1, 1], got [{images.min():.3g}, {images.max():.3g}]; "
                "map uint8 images with ldm_course.data.to_unit_range"
            )
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = [self(chunk.to(device)).argmax(dim=1).cpu() for chunk in images.split(batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def per_class_hit_rate(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """hit_c = #(predicted == c and label == c) / #(label == c): (num_classes,) float64, NaN where
    no item has label c."""
    if predicted.shape != labels.shape or labels.ndim != 1:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and labels {tuple(labels.shape)} must be equal (N,)"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    count = torch.bincount(labels, minlength=num_classes).double()  # (K,)
    hits = torch.bincount(labels[predicted == labels], minlength=num_classes).double()  # (K,)
    return torch.where(count > 0, hits / count.clamp(min=1), torch.full_like(count, float("nan")))


@dataclass(frozen=True)
class Recognisability:
    score: float  # mean over `classes` of hit / ceiling
    hit: tuple[float, ...]  # per class (NaN: no sample of that class)
    ceiling: tuple[float, ...]  # per class (NaN: no test image of that class)
    classes: tuple[int, ...]  # the classes averaged over
    class_names: tuple[str, ...]
    num_samples: int
    chance: float  # the score of samples that ignore their label, 1 / K / mean ceiling

    def as_dict(self) -> dict:
        d = asdict(self)
        d["per_class"] = {
            self.class_names[c]: {"hit": self.hit[c], "ceiling": self.ceiling[c]}
            for c in range(len(self.class_names))
        }
        return d


def recognisability(
    judge: Judge,
    samples: torch.Tensor,
    sample_labels: torch.Tensor,
    ceiling: torch.Tensor,
    *,
    class_names: tuple[str, ...],
) -> Recognisability:
    """Score samples (N, 3, size, size) in [-1, 1] drawn conditioned on sample_labels (N,), against
    the judge's per-class ceiling (K,) (from `judge_ceiling`)."""
    k = judge.cfg.num_classes
    if ceiling.shape != (k,) or len(class_names) != k:
        raise ValueError(
            f"ceiling {tuple(ceiling.shape)} and {len(class_names)} class names must match the "
            f"judge's {k} classes; use the ceiling stored with this judge"
        )
    if samples.shape[0] != sample_labels.shape[0]:
        raise ValueError(f"{samples.shape[0]} samples but {sample_labels.shape[0]} labels")
    hit = per_class_hit_rate(judge.predict(samples), sample_labels.cpu(), k)  # (K,)
    ceiling = ceiling.double()
    valid = ~hit.isnan() & ~ceiling.isnan() & (ceiling > 0)
    if not valid.any():
        raise ValueError(
            "no class has both samples and a non-zero ceiling: condition the samples on the test "
            "split's labels"
        )
    classes = tuple(valid.nonzero().flatten().tolist())
    score = (hit[valid] / ceiling[valid]).mean().item()
    chance = (1.0 / k) / ceiling[valid].mean().item()
    return Recognisability(
        score=score,
        hit=tuple(hit.tolist()),
        ceiling=tuple(ceiling.tolist()),
        classes=classes,
        class_names=tuple(class_names),
        num_samples=int(samples.shape[0]),
        chance=chance,
    )


def score_generator(
    ldm,
    judge: Judge,
    ceiling: torch.Tensor,
    class_names: tuple[str, ...],
    labels: torch.Tensor,
    *,
    guidance_scale: float,
    steps: int = 50,
    seed: int = 0,
    batch_size: int = 128,
) -> Recognisability:
    """Sample one image per label (N,) from a class-conditional `ldm` (LatentDiffusion: DDIM
    `steps`, guidance w, z_T from one generator seeded `seed`), resize to the judge's size, score.
    Condition on the test split's labels, so every class is weighted as the real test set is."""
    from ldm_course.data import resize

    g = torch.Generator().manual_seed(seed)
    images = [
        ldm.generate(
            len(y), steps=steps, guidance_scale=guidance_scale, y=y, generator=g, progress=False
        ).cpu()
        for y in labels.split(batch_size)
    ]  # (N, 3, H, W) in [-1, 1]
    images = resize(torch.cat(images), judge.cfg.size)  # (N, 3, size, size)
    return recognisability(judge, images, labels, ceiling, class_names=class_names)


def judge_ceiling(judge: Judge, test_images: torch.Tensor, test_labels: torch.Tensor):
    """ceiling_c: the judge's accuracy on the real held-out images of class c, (K,) float64."""
    return per_class_hit_rate(judge.predict(test_images), test_labels, judge.cfg.num_classes)


def augment(x: torch.Tensor, *, generator: torch.Generator, shift: int = 4) -> torch.Tensor:
    """Training-time views of (B, 3, S, S) images in [-1, 1]: a random shift of up to `shift`
    pixels (padding with white, the emoji background) and, for half the batch, a Gaussian blur of
    random width (samples of a small diffusion model are softer than the drawings). No flips."""
    b, _, s, _ = x.shape
    padded = F.pad(x, (shift,) * 4, value=1.0)  # (B, 3, S + 2 shift, S + 2 shift)
    dx, dy = torch.randint(0, 2 * shift + 1, (2, b), generator=generator).tolist()
    out = torch.stack(
        [padded[i, :, dy[i] : dy[i] + s, dx[i] : dx[i] + s] for i in range(b)]
    )  # (B, 3, S, S)
    sigma = torch.rand(b, generator=generator) * 1.5  # (B,) in [0, 1.5) pixels
    blur = torch.rand(b, generator=generator) < 0.5  # (B,)
    taps = torch.arange(-3, 4, dtype=x.dtype)  # (7,)
    for i in blur.nonzero().flatten().tolist():
        w = torch.exp(-(taps**2) / (2 * max(sigma[i].item(), 0.3) ** 2))
        w = (w / w.sum()).to(x.device)  # (7,)
        img = F.pad(out[i : i + 1], (3, 3, 3, 3), mode="replicate")  # (1, 3, S + 6, S + 6)
        img = F.conv2d(img, w.view(1, 1, 1, 7).expand(3, 1, 1, 7), groups=3)  # rows
        out[i] = F.conv2d(img, w.view(1, 1, 7, 1).expand(3, 1, 7, 1), groups=3)[0]  # columns
    return out


def load_judge(labels: str = "category", *, path: str | Path | None = None):
    """The shipped judge for `labels` ("category", "subcategory" or "live": faces vs flags at
    32 px), or one from `path`: (judge in eval mode on the CPU, ceiling (K,), class names)."""
    if path is None:
        from ldm_course.pretrained import pretrained_dir

        if labels not in ("category", "subcategory", "live"):
            raise ValueError(f"labels must be 'category', 'subcategory' or 'live', got {labels!r}")
        path = pretrained_dir() / f"judge-{labels}.safetensors"
    tensors, meta = load_tensors(Path(path))
    if meta.get("kind") != "judge":
        raise ValueError(f"{path} holds a {meta.get('kind')!r} checkpoint, not a judge")
    cfg = JudgeConfig(**{**meta["config"], "channels": tuple(meta["config"]["channels"])})
    judge = Judge(cfg)
    load_weights(judge, tensors, source=str(path))
    ceiling = torch.tensor([float("nan") if c is None else c for c in meta["ceiling"]])
    return judge.eval().requires_grad_(False), ceiling.double(), tuple(meta["class_names"])


__all__ = [
    "load_judge",
    "Judge",
    "JudgeConfig",
    "Recognisability",
    "augment",
    "judge_ceiling",
    "per_class_hit_rate",
    "recognisability",
    "score_generator",
]
