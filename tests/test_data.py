import numpy as np
import pytest
import torch
from PIL import Image

from ldm_course.data import (
    TWEMOJI_SHA256,
    image_folder,
    is_test_base,
    load_twemoji_arrays,
    subcategory_names,
    twemoji,
    twemoji_content_hash,
    twemoji_labels_of,
)


def test_shipped_file_matches_recorded_hash():
    assert twemoji_content_hash(load_twemoji_arrays()) == TWEMOJI_SHA256


def test_split_is_about_ten_percent_and_grouped_by_base_emoji():
    arrays = load_twemoji_arrays()
    assert len(arrays["images"]) == 3786
    train, test = twemoji("train"), twemoji("test")
    assert len(train) + len(test) == 3786
    assert 0.07 < len(test) / 3786 < 0.13
    test_bases = {b for b in arrays["base"] if is_test_base(b)}
    train_bases = {b for b in arrays["base"] if not is_test_base(b)}
    assert not test_bases & train_bases
    # every skin-tone variant sits with its base emoji
    for b, name in zip(arrays["base"], arrays["names"], strict=True):
        if "(1F3F" in name:
            assert is_test_base(b) == is_test_base(str(b))
    assert twemoji("test").names == test.names  # deterministic


def test_groups_are_base_emoji():
    arrays = load_twemoji_arrays()
    train = twemoji("train")
    bases = [str(b) for b in arrays["base"] if not is_test_base(b)]
    assert train.groups.shape == train.labels.shape and train.groups.dtype == torch.int64
    assert len(set(train.groups.tolist())) == len(set(bases)) == int(train.groups.max()) + 1
    for g, b in zip(train.groups.tolist(), bases, strict=True):  # same group <=> same base emoji
        assert bases[train.groups.tolist().index(g)] == b
    # People & Body: several skin tones per emoji; Objects: one image per emoji
    people, objects = (train.class_names.index(c) for c in ("People & Body", "Objects"))
    for c, lo, hi in ((people, 5, 7), (objects, 1, 1)):
        sel = train.labels == c
        ratio = sel.sum().item() / len(set(train.groups[sel].tolist()))
        assert lo <= ratio <= hi, (c, ratio)


def test_items_range_sizes_and_categories():
    ds = twemoji("test", size=32)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert -1 <= ds.images.min() and ds.images.max() <= 1
    assert 0 <= y < ds.num_classes == 10
    assert ds.class_names[0] == "Smileys & Emotion"
    big = twemoji("test", size=64)
    # the antialiased resize keeps each image's mean colour
    torch.testing.assert_close(
        big.images[:4].mean(dim=(2, 3)), ds.images[:4].mean(dim=(2, 3)), atol=0.01, rtol=0
    )


def test_white_background():
    x = twemoji("train").images[0]
    assert (x[:, 0, 0] == 1).all()  # corners are transparent in Twemoji -> white


@pytest.mark.parametrize(("split", "size"), [("val", 64), ("train", 48)])
def test_bad_arguments(split, size):
    with pytest.raises(ValueError, match="split must be|size must divide"):
        twemoji(split, size)


def _save(path, mode, size, color):
    Image.new(mode, (size, size), color).save(path)


def test_image_folder_conversions(tmp_path):
    (tmp_path / "cats").mkdir()
    _save(tmp_path / "cats" / "rgb.png", "RGB", 16, (255, 0, 0))
    _save(tmp_path / "cats" / "gray.png", "L", 16, 128)
    _save(tmp_path / "rgba.png", "RGBA", 16, (0, 0, 0, 0))
    ds = image_folder(tmp_path, size=16)
    assert ds.class_names == (".", "cats")
    assert ds.images.shape == (3, 3, 16, 16)
    assert ds.names == ("cats/gray.png", "cats/rgb.png", "rgba.png") and ds.labels.tolist() == [
        1,
        1,
        0,
    ]
    rgba = ds.images[2]
    assert torch.allclose(rgba, torch.ones_like(rgba))  # transparent -> white (documented)
    gray = ds.images[0]
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])  # replicated


def test_image_folder_errors(tmp_path):
    _save(tmp_path / "big.png", "RGB", 20, (0, 0, 0))
    with pytest.raises(ValueError, match=r"is 20x20, expected 16x16.*resize_to_fit=True"):
        image_folder(tmp_path, size=16)
    assert image_folder(tmp_path, size=16, resize_to_fit=True).images.shape == (1, 3, 16, 16)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt is not an image file"):
        image_folder(tmp_path, size=16, resize_to_fit=True)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken.png is not a readable image"):
        image_folder(tmp_path, size=16, resize_to_fit=True)
    with pytest.raises(ValueError, match="does not exist"):
        image_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no files"):
        image_folder(empty)


def test_torchvision_adapters_reach_the_download(tmp_path, monkeypatch):
    """The Colab path exists and goes as far as the network call (offline here)."""
    from torchvision.datasets import celeba, utils

    from ldm_course.data import torchvision_dataset

    def offline(*args, **kwargs):
        raise OSError("offline: no network")

    monkeypatch.setattr(utils, "download_url", offline)
    # CelebA downloads from Google Drive (through gdown, which torchvision imports first and
    # refuses with a RuntimeError when it is missing): replace that call too, so every dataset
    # is seen to reach its network call, not to stop before it
    monkeypatch.setattr(celeba, "download_file_from_google_drive", offline)
    for name in ("cifar10", "fashionmnist", "flowers102", "celeba"):
        with pytest.raises(OSError, match="offline: no network"):
            torchvision_dataset(name, tmp_path, download=True)
    with pytest.raises(ValueError, match="unknown dataset"):
        torchvision_dataset("imagenet", tmp_path)


def test_array_dtypes():
    arrays = load_twemoji_arrays()
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape[1:] == (64, 64, 3)


def test_subcategory_labels_refine_the_categories():
    by_cat, by_sub = twemoji("all"), twemoji("all", labels="subcategory")
    assert by_sub.num_classes == 99 and len(set(by_sub.class_names)) == 99
    assert torch.equal(by_sub.images, by_cat.images) and by_sub.names == by_cat.names
    # a hierarchy: every subcategory lies in exactly one category
    for s in range(99):
        assert len(set(by_cat.labels[by_sub.labels == s].tolist())) == 1, by_sub.class_names[s]
    # numbered by category first: subcategory ids grow with category ids
    first_cat = [int(by_cat.labels[by_sub.labels == s][0]) for s in range(99)]
    assert first_cat == sorted(first_cat)
    for name, sub in [
        ("GRINNING FACE", "face-smiling"),
        ("RED APPLE", "food-fruit"),
        ("HAMMER", "tool"),
        ("Japan Flag", "country-flag"),
        ("ALARM CLOCK", "time"),
    ]:
        assert by_sub.class_names[by_sub.labels[by_sub.names.index(name)]] == sub
    # one numbering for both splits, and the split itself is unchanged
    train, test = twemoji("train", labels="subcategory"), twemoji("test", labels="subcategory")
    assert train.class_names == test.class_names == by_sub.class_names
    assert test.names == twemoji("test").names
    assert train.groups is not None and torch.equal(train.groups, twemoji("train").groups)


def test_unknown_labels_are_refused():
    with pytest.raises(ValueError, match="labels must be 'category' or 'subcategory'"):
        twemoji("train", labels="emoji")


def test_a_file_without_subcategories_says_how_to_rebuild_it():
    arrays = {k: v for k, v in load_twemoji_arrays().items() if k != "subcategories"}
    with pytest.raises(ValueError, match="rebuild it with scripts/course/build_twemoji.py"):
        subcategory_names(arrays)


def test_label_space_of_a_model_from_its_class_names():
    assert twemoji_labels_of(twemoji("test").class_names) == "category"
    assert twemoji_labels_of(()) == "category"  # unconditional: labels are ignored
    sub = twemoji("test", labels="subcategory").class_names
    assert twemoji_labels_of(sub) == "subcategory"
    with pytest.raises(ValueError, match="not trained on the built-in Twemoji"):
        twemoji_labels_of(sub[:10])
