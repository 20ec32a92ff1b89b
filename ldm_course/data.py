"""Datasets -> tensors in [-1, 1], with deterministic splits.

The built-in dataset is Twemoji (https://github.com/twitter/twemoji), by Twitter, Inc. and other
contributors, licensed CC-BY 4.0: 3,786 emoji at 64x64, alpha composited on white, shipped in
`ldm_course/assets/twemoji64.npz` (rebuilt by `scripts/course/build_twemoji.py`).
"""

import hashlib
import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import UnidentifiedImageError
from torch.utils.data import Dataset

from ldm_course.infra.image_files import list_images, open_image, rgb_array

TWEMOJI_CATEGORIES = (
    "Smileys & Emotion",
    "People & Body",
    "Component",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
    "Flags",
)
# subcategories whose mirror image is another sign (letters, digits, flags, !?, $): never flipped
TWEMOJI_NOT_MIRRORABLE = (
    "keycap",
    "alphanum",
    "punctuation",
    "currency",
    "zodiac",
    "other-symbol",
    "country-flag",
    "subdivision-flag",
)
TWEMOJI_SHA256 = "966f6cc2a1c6e4a06a689b5af429bf189198447ff509d1be06ac878cedca59a9"
TWEMOJI_TEST_BUCKETS = 10  # a base emoji goes to the test split when hash(base) % 10 == 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def twemoji_content_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the decoded arrays (names, dtypes, shapes and bytes), independent of zip timestamps."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def to_unit_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) in [0, 255] -> float (B, 3, H, W) in [-1, 1]."""
    x = images_uint8.permute(0, 3, 1, 2).float()  # (B, H, W, 3) -> (B, 3, H, W)
    return x / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), clamping what the model overshoots."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu()  # (B, 3, H, W) -> (B, H, W, 3)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased resize of (B, 3, H, W) images to (B, 3, size, size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )


def is_test_base(base: str) -> bool:
    """The split is by base emoji, so every skin-tone variant lands on the same side."""
    return int(hashlib.sha256(base.encode()).hexdigest(), 16) % TWEMOJI_TEST_BUCKETS == 0


class TensorImageDataset(Dataset):
    """Images (N, 3, S, S) in [-1, 1] with integer labels; items are (image, label).

    groups: optional (N,) ids of near-duplicate groups (for Twemoji: the base emoji, so an emoji
    and its skin-tone variants share one), for sampling by group (train.group_batch_indices).
    mirrorable: optional (N,) bools, False where the mirror image is not a valid image of the
    same kind (text, flags), for flip augmentation; None: every image may be mirrored.
    skipped: what a folder held that is not in the dataset (hidden entries), to report.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        class_names=(),
        names=(),
        groups: torch.Tensor | None = None,
        mirrorable: torch.Tensor | None = None,
        skipped=(),
    ):
        if groups is not None and groups.shape != labels.shape:
            raise ValueError(f"groups must be ({len(labels)},), got {tuple(groups.shape)}")
        if mirrorable is not None and (
            mirrorable.shape != labels.shape or mirrorable.dtype != torch.bool
        ):
            raise ValueError(
                f"mirrorable must be ({len(labels)},) bools, got {tuple(mirrorable.shape)} "
                f"{mirrorable.dtype}"
            )
        self.images, self.labels, self.groups = images, labels, groups
        self.mirrorable = mirrorable
        self.class_names, self.names = tuple(class_names), tuple(names)
        self.skipped = tuple(skipped)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_twemoji_arrays(
    path: Path | None = None, keys: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """The raw arrays of the shipped file: images (N, 64, 64, 3) uint8, names, categories, base
    (the base emoji of skin-tone variants), subcategories; only `keys` if given (the file is read
    lazily per array, so the labels alone skip decompressing the images)."""
    path = path or Path(str(importlib.resources.files("ldm_course"))) / "assets" / "twemoji64.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"the built-in dataset file {path} is missing; reinstall the package "
            "(pip install -e .) or rebuild it with scripts/course/build_twemoji.py"
        )
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in (z.files if keys is None else keys)}


def subcategory_names(arrays: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The 99 subcategories (e.g. "food-fruit"), ordered by category, then first appearance.

    Computed over the whole file, so train and test splits share one numbering.
    """
    if "subcategories" not in arrays:
        raise ValueError(
            "this dataset file has no subcategories; rebuild it with scripts/course/build_twemoji.py"
        )
    first = {}
    for i, (cat, sub) in enumerate(zip(arrays["categories"], arrays["subcategories"], strict=True)):
        first.setdefault(str(sub), (int(cat), i))
    return tuple(sorted(first, key=first.__getitem__))


def twemoji_labels_of(class_names) -> Literal["category", "subcategory"]:
    """Which Twemoji labels a model was trained on, read from its class names (none: an
    unconditional model, which ignores labels; category then)."""
    names = tuple(class_names)
    if names in ((), TWEMOJI_CATEGORIES):
        return "category"
    if names == subcategory_names(load_twemoji_arrays(keys=("categories", "subcategories"))):
        return "subcategory"
    raise ValueError(
        f"these {len(names)} class names ({', '.join(names[:3])}, ...) are neither the Twemoji "
        "categories nor its subcategories: this model was not trained on the built-in Twemoji"
    )


def classes_in_turn(n: int, num_classes: int) -> torch.Tensor:
    """(n,) labels for a sample grid: every class in turn, or, with more classes than samples
    (99 subcategories in 64 samples), n classes spread evenly from the first to the last."""
    if num_classes <= n:
        return torch.arange(n) % num_classes
    return torch.linspace(0, num_classes - 1, n).round().long()


def twemoji(
    split: Literal["train", "test", "all"] = "train",
    size: int = 64,
    labels: Literal["category", "subcategory"] = "category",
) -> TensorImageDataset:
    """The built-in Twemoji dataset: items (image (3, size, size) in [-1, 1], label id).

    About 10% of base emoji (with all their skin-tone variants) form the test split.
    labels: "category" (10 labels, e.g. "Food & Drink") or "subcategory" (99 finer ones of
    emoji.json, e.g. "food-fruit"; each belongs to one category). `dataset.class_names` holds the
    label names, `dataset.names` the emoji names; `dataset.mirrorable` is False for the
    subcategories in TWEMOJI_NOT_MIRRORABLE (letters, digits, flags, ...).
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    if not isinstance(size, int) or size < 8 or size > 64 or 64 % size != 0:
        raise ValueError(f"size must divide 64 (8, 16, 32 or 64), got {size!r}")
    if labels not in ("category", "subcategory"):
        raise ValueError(f"labels must be 'category' or 'subcategory', got {labels!r}")
    arrays = load_twemoji_arrays()
    test = np.array([is_test_base(b) for b in arrays["base"]])
    keep = {"train": ~test, "test": test, "all": np.ones_like(test)}[split]
    images = to_unit_range(torch.from_numpy(arrays["images"][keep]))  # (N, 3, 64, 64)
    images = resize(images, size)  # (N, 3, size, size)
    if labels == "category":
        class_names, ids = TWEMOJI_CATEGORIES, arrays["categories"]
    else:
        class_names = subcategory_names(arrays)
        ids = np.array([class_names.index(str(s)) for s in arrays["subcategories"]])
    label_ids = torch.from_numpy(ids[keep].astype(np.int64))
    names = [str(n) for n in arrays["names"][keep]]
    _, groups = np.unique(arrays["base"][keep], return_inverse=True)  # base emoji -> 0..G-1
    mirrorable = ~np.isin(arrays["subcategories"][keep].astype(str), TWEMOJI_NOT_MIRRORABLE)
    return TensorImageDataset(
        images,
        label_ids,
        class_names=class_names,
        names=names,
        groups=torch.from_numpy(groups.astype(np.int64)),
        mirrorable=torch.from_numpy(mirrorable),
    )


def load_image(path: Path, size: int, *, resize_to_fit: bool = False) -> torch.Tensor:
    """One image file -> (3, size, size) in [-1, 1].

    Documented conversions (image_files.rgb_array): grayscale is replicated to RGB; 16-bit images
    are scaled to 8 bits; transparency is composited over white, like the built-in dataset; the
    camera's EXIF orientation is applied. A size other than `size` is an error unless
    `resize_to_fit=True`, which resizes (antialiased) to a square, center-cropping first.
    """
    try:
        with open_image(path) as img:
            rgb = rgb_array(img, path)  # (H, W, 3) uint8
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(
            f"{path} is not a readable image ({err.__class__.__name__}: {err}); "
            "remove it from the folder or replace it with a valid PNG/JPEG"
        ) from err
    x = to_unit_range(torch.from_numpy(rgb)[None])  # (1, 3, H, W)
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        if not resize_to_fit:
            raise ValueError(
                f"{path} is {w}x{h}, expected {size}x{size}; resize your images or pass "
                "resize_to_fit=True (--resize on the command line) to center-crop and resize"
            )
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        x = resize(x[..., top : top + s, left : left + s], size)  # (1, 3, size, size)
    return x[0]


def image_folder(
    root: str | Path, size: int = 64, *, resize_to_fit: bool = False
) -> TensorImageDataset:
    """Every image under `root` (recursively), loaded eagerly so a bad file fails before training.

    Subfolders become classes (sorted by name); files directly in `root` are class 0. Hidden
    entries (.ipynb_checkpoints, .DS_Store, ...) are left out and listed in `dataset.skipped`; an
    unreadable folder, a broken link or a file that is not an image is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a directory")
    files, skipped = list_images(root)
    if not files:
        raise ValueError(f"image folder {root} holds no files; put your PNG/JPEG images in it")
    class_names = sorted({p.parent.relative_to(root).as_posix() for p in files})
    images, labels = [], []
    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"{p} is not an image file (suffix {p.suffix!r}); allowed suffixes: "
                f"{', '.join(IMAGE_SUFFIXES)}. Move it out of the folder."
            )
        images.append(load_image(p, size, resize_to_fit=resize_to_fit))
        labels.append(class_names.index(p.parent.relative_to(root).as_posix()))
    names = [p.relative_to(root).as_posix() for p in files]
    return TensorImageDataset(
        torch.stack(images),
        torch.tensor(labels),
        class_names=class_names,
        names=names,
        skipped=skipped,
    )


def torchvision_dataset(
    name: Literal["cifar10", "celeba", "flowers102", "fashionmnist"],
    root: str | Path,
    *,
    split: Literal["train", "test"] = "train",
    size: int = 64,
    download: bool = True,
) -> Dataset:
    """Adapters for torchvision datasets (these download: for Colab / online use)."""
    from torchvision import datasets, transforms

    to_tensor = [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
    if name == "fashionmnist":
        to_tensor.insert(0, transforms.Grayscale(num_output_channels=3))
    tf = transforms.Compose([*to_tensor, transforms.Normalize([0.5] * 3, [0.5] * 3)])
    train = split == "train"
    makers = {
        "cifar10": lambda: datasets.CIFAR10(root, train=train, transform=tf, download=download),
        "fashionmnist": lambda: datasets.FashionMNIST(
            root, train=train, transform=tf, download=download
        ),
        "celeba": lambda: datasets.CelebA(
            root, split="train" if train else "test", transform=tf, download=download
        ),
        "flowers102": lambda: datasets.Flowers102(
            root, split="train" if train else "test", transform=tf, download=download
        ),
    }
    if name not in makers:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(makers)}")
    return makers[name]()
