"""The recognisability judge and score (ldm_course.judge): the arithmetic against a plain loop, the
shipped judges against their cards, and the three calibration points of the score: real images
about 1, decoded noise and shuffled labels about chance."""

import json

import pytest
import torch

from ldm_course.data import TensorImageDataset, twemoji
from ldm_course.judge import (
    Judge,
    JudgeConfig,
    augment,
    judge_ceiling,
    load_judge,
    per_class_hit_rate,
    recognisability,
)
from ldm_course.pretrained import pretrained_dir
from ldm_course.training.train_judge import judge_data, train_judge


def test_hit_rate_matches_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (200,), generator=g)
    predicted = torch.where(
        torch.rand(200, generator=g) < 0.6, labels, torch.randint(0, 5, (200,), generator=g)
    )
    labels[labels == 3] = 2  # class 3 has no items: NaN
    got = per_class_hit_rate(predicted, labels, 5)
    for c in range(5):
        items = [i for i in range(200) if labels[i] == c]
        if not items:
            assert got[c].isnan()
        else:
            assert got[c].item() == pytest.approx(
                sum(predicted[i] == c for i in items).item() / len(items)
            )


def test_score_is_hit_over_ceiling_averaged_over_classes_with_a_ceiling():
    judge = Judge(JudgeConfig(num_classes=3, size=16, channels=(8, 8), norm_groups=4))
    samples = torch.rand(6, 3, 16, 16) * 2 - 1
    predicted = judge.predict(samples)
    labels = predicted.clone()
    labels[0] = (predicted[0] + 1) % 3  # one miss
    ceiling = torch.tensor([0.5, 1.0, float("nan")], dtype=torch.float64)
    r = recognisability(judge, samples, labels, ceiling, class_names=("a", "b", "c"))
    hit = per_class_hit_rate(predicted, labels, 3)
    valid = [c for c in (0, 1) if not hit[c].isnan()]
    assert r.classes == tuple(valid)
    assert r.score == pytest.approx(
        sum(hit[c].item() / ceiling[c].item() for c in valid) / len(valid)
    )
    assert r.chance == pytest.approx(1 / 3 / ceiling[valid].mean().item())


def test_judge_refuses_wrong_shapes_and_ranges():
    judge = Judge(JudgeConfig(num_classes=2, size=16, channels=(8, 8), norm_groups=4))
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
        judge(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="to_unit_range"):
        judge.predict(torch.full((1, 3, 16, 16), 255.0))
    with pytest.raises(ValueError, match="ceiling"):
        recognisability(
            judge,
            torch.zeros(1, 3, 16, 16),
            torch.zeros(1, dtype=torch.long),
            torch.ones(3),
            class_names=("a", "b"),
        )


def test_augment_never_flips_and_keeps_the_range():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    y = augment(x, generator=g, shift=0)
    # no shift: each image is itself or a blur of itself, never its mirror
    for i in range(8):
        assert (y[i] - x[i]).abs().mean() < (y[i] - x[i].flip(-1)).abs().mean()
    assert y.min() >= -1 - 1e-6 and y.max() <= 1 + 1e-6


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    data = twemoji("test", size=16)
    small = TensorImageDataset(data.images[:64], data.labels[:64], class_names=data.class_names)
    state = torch.random.get_rng_state()
    a = train_judge(small, size=16, steps=3, batch_size=32, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train_judge(small, size=16, steps=3, batch_size=32, progress=False)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.parametrize("labels", ["category", "subcategory", "live"])
def test_shipped_judge_reproduces_its_ceiling_on_the_real_test_split(labels):
    judge, ceiling, names = load_judge(labels)
    _, test, _ = judge_data(labels)
    assert names == test.class_names
    measured = judge_ceiling(judge, test.images, test.labels)
    assert torch.allclose(measured, ceiling, equal_nan=True, atol=1.5 / len(test))
    # real test images, conditioned on their own labels, score 1 (hit rate = ceiling)
    r = recognisability(judge, test.images, test.labels, ceiling, class_names=names)
    assert r.score == pytest.approx(1.0, abs=0.02)
    card = json.loads((pretrained_dir() / f"judge-{labels}.json").read_text())
    assert card["parameters"] == sum(p.numel() for p in judge.parameters()) < 1_000_000


@pytest.mark.slow
def test_decoded_noise_and_shuffled_labels_score_about_chance():
    from ldm_course.pretrained import load_ldm

    judge, ceiling, names = load_judge("category")
    ldm = load_ldm()
    test = twemoji("test")
    g = torch.Generator().manual_seed(0)
    # decoded noise: random latents of unit variance through the VAE decoder
    h = ldm.image_size // ldm.vae.downsample_factor
    z = torch.randn(len(test), ldm.vae.cfg.latent_channels, h, h, generator=g)  # (N, 4, 8, 8)
    noise = ldm.decode(z).clamp(-1, 1)  # (N, 3, 64, 64), as generate clamps
    r_noise = recognisability(judge, noise, test.labels, ceiling, class_names=names)
    # a real model sampled with the test labels, scored against the labels shuffled
    samples = ldm.generate(
        len(test), steps=20, guidance_scale=3.0, y=test.labels, generator=g, progress=False
    )
    right = recognisability(judge, samples, test.labels, ceiling, class_names=names)
    shuffled = test.labels[torch.randperm(len(test), generator=g)]
    r_shuffled = recognisability(judge, samples, shuffled, ceiling, class_names=names)
    assert abs(r_noise.score - r_noise.chance) < 0.15, (r_noise.score, r_noise.chance)
    assert abs(r_shuffled.score - r_shuffled.chance) < 0.15, (r_shuffled.score, r_shuffled.chance)
    assert right.score > r_shuffled.score + 0.3
