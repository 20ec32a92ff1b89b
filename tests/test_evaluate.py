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
