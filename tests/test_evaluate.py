"""ldm-course evaluate on a tiny untrained model: the report's structure, and samples conditioned
on the test images' labels in the model's own label space."""

import json

import pytest
import torch
from helpers import tiny_ldm

from ldm_course.data import twemoji
from ldm_course.training import evaluate as evaluate_module


@pytest.mark.slow  # evaluates the shipped VAE on the whole test split: about 30 s
def test_a_subcategory_model_is_sampled_with_subcategory_labels(tmp_path, monkeypatch):
    sub = twemoji("test", labels="subcategory")
    ldm = tiny_ldm(image_size=64, num_classes=len(sub.class_names), class_names=sub.class_names)
    seen = []
    generate = ldm.generate

    def recording_generate(n, **kwargs):
        seen.append(kwargs["y"].clone())
        return generate(n, **{**kwargs, "steps": 2})

    monkeypatch.setattr(ldm, "generate", recording_generate)
    monkeypatch.setattr(evaluate_module, "load_ldm", lambda *a, **k: ldm)
    out = tmp_path / "evaluation.json"
    text = evaluate_module.evaluate(out=out, num_samples=8, ddpm=False, seed=3)
    pick = torch.randperm(len(sub), generator=torch.Generator().manual_seed(3))[:8]
    assert len(seen) == 3  # DDIM at guidance 1, 3, 5
    for y in seen:
        assert torch.equal(y, sub.labels[pick])
    assert int(sub.labels[pick].max()) >= 10  # really subcategory ids, not categories
    report = json.loads(out.read_text())
    assert report["test_images"] == 398 and report["vae"]["images"] == 398
    assert len(report["frechet_distance"]) == 5  # floor, ceiling, three guidance scales
    assert "Frechet distance (8 images each" in text


@pytest.mark.slow  # over 7 s: in CI's full run, not the fast subset
def test_evaluate_scores_each_ddim_setting_with_the_judge_of_the_models_labels(
    tmp_path, monkeypatch
):
    from ldm_course.data import TWEMOJI_CATEGORIES, resize
    from ldm_course.judge import Judge, JudgeConfig

    k = len(TWEMOJI_CATEGORIES)
    ldm = tiny_ldm(image_size=64, num_classes=k, class_names=TWEMOJI_CATEGORIES)
    torch.manual_seed(1)
    judge = Judge(JudgeConfig(num_classes=k, size=32, channels=(8, 16))).eval()
    ceiling = torch.linspace(0.5, 1.0, k).double()
    seen = []
    generate = ldm.generate

    def recording_generate(n, **kwargs):
        images = generate(n, **{**kwargs, "steps": 2})
        seen.append((images, kwargs["y"].clone()))
        return images

    monkeypatch.setattr(ldm, "generate", recording_generate)
    monkeypatch.setattr(evaluate_module, "load_ldm", lambda *a, **k: ldm)
    monkeypatch.setattr(
        evaluate_module, "load_judge", lambda labels: (judge, ceiling, TWEMOJI_CATEGORIES)
    )
    out = tmp_path / "evaluation.json"
    text = evaluate_module.evaluate(out=out, num_samples=12, ddpm=False, seed=3)
    scores = json.loads(out.read_text())["recognisability"]
    assert list(scores) == [f"DDIM 50 steps, guidance {w}" for w in (1, 3, 5)]
    for (images, y), v in zip(seen, scores.values(), strict=True):
        with torch.no_grad():  # a plain loop: the judge's top class against the label
            top = judge(resize(images, 32)).argmax(dim=1)
        ratios = []
        for c in range(k):
            mine = y == c
            if mine.any():
                ratios.append((top[mine] == c).double().mean().item() / ceiling[c].item())
        assert v["score"] == pytest.approx(sum(ratios) / len(ratios))
        assert v["num_samples"] == 12
        assert v["chance"] == pytest.approx((1 / k) / ceiling[torch.unique(y)].mean().item())
    assert "recognisability (samples the judge assigns" in text
