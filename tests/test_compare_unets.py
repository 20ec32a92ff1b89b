"""scripts/experiments/compare_unets.py: per-category distances and copies from one sample per test image."""

import pytest
import torch
from helpers import load_script, tiny_ldm
from PIL import Image

from ldm_course.data import TWEMOJI_CATEGORIES, TensorImageDataset, twemoji

compare_unets = load_script("scripts/experiments/compare_unets.py")


class PooledPixels:  # a cheap stand-in for FeatureExtractor: 4x4-pooled pixels, 48-d
    def batched(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def test_one_row_splits_people_from_the_rest_and_counts_copies(tmp_path):
    ldm = tiny_ldm(image_size=16, num_classes=10)  # 16x16 images, 2x2 latents
    people = TWEMOJI_CATEGORIES.index("People & Body")
    labels = torch.tensor([people] * 5 + [0] * 7)
    gen = torch.Generator().manual_seed(0)
    test = TensorImageDataset(
        torch.rand(12, 3, 16, 16, generator=gen) * 2 - 1, labels, class_names=TWEMOJI_CATEGORIES
    )
    features = PooledPixels()
    real = features.batched(test.images)
    # the training set holds the samples of seed 3 themselves: every sample is a copy
    copies_of = ldm.generate(
        12,
        steps=2,
        y=labels,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(3),
        progress=False,
    ).cpu()
    train = TensorImageDataset(torch.cat([copies_of, -copies_of]), torch.zeros(24).long())
    row = compare_unets.one_row(
        ldm, "tiny", 1.0, 3, 2, test, train, features, real, grid=tmp_path / "g.png"
    )
    with Image.open(tmp_path / "g.png") as grid:  # the 7 samples outside People & Body, 8 a row
        assert grid.size == (2 + 7 * 18, 2 + 18)
    assert [row[n]["images"] for n in compare_unets.SUBSETS] == [12, 5, 7]
    assert [row[n]["near_copies"] for n in compare_unets.SUBSETS] == [12, 5, 7]
    again = compare_unets.one_row(ldm, "tiny", 1.0, 3, 2, test, train, features, real)
    assert again["all"]["fd"] == row["all"]["fd"]  # the seed fixes the samples
    other = compare_unets.one_row(ldm, "tiny", 1.0, 4, 2, test, train, features, real)
    assert other["all"]["near_copies"] < 12  # another seed: other samples, not in train
    assert row["all"]["near_copies_or_mirror"] == 12  # a copy is a copy, mirrored or not
    # a training set of their mirror images: invisible to the plain check, caught by the other
    mirrored = TensorImageDataset(copies_of.flip(-1), torch.zeros(12).long())
    row = compare_unets.one_row(ldm, "tiny", 1.0, 3, 2, test, mirrored, features, real)
    assert row["all"]["near_copies"] < 12
    assert [row[n]["near_copies_or_mirror"] for n in compare_unets.SUBSETS] == [12, 5, 7]


def test_model_labels_follow_the_models_label_space():
    by_cat = TensorImageDataset(torch.zeros(3, 3, 8, 8), torch.tensor([0, 1, 2]))
    by_sub = TensorImageDataset(torch.zeros(3, 3, 8, 8), torch.tensor([5, 0, 9]))
    tests = {"category": by_cat, "subcategory": by_sub}

    class Model:
        class_names = twemoji("test", labels="subcategory").class_names

    assert torch.equal(compare_unets.model_labels(Model(), tests), torch.tensor([5, 0, 9]))
    Model.class_names = TWEMOJI_CATEGORIES
    assert torch.equal(compare_unets.model_labels(Model(), tests), torch.tensor([0, 1, 2]))
    Model.class_names = ("x",)
    with pytest.raises(ValueError, match="neither the Twemoji categories nor its subcategories"):
        compare_unets.model_labels(Model(), tests)
