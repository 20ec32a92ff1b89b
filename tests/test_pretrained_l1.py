"""The shipped L1-only VAE (vae-l1, notebook 02's comparison): loadable with load_vae(perceptual=False),
its own encoder (so refused for the U-Nets' latents), and a model card whose test-split metrics the
package's evaluation reproduces."""

import json

import pytest
import torch

from ldm_course.data import twemoji
from ldm_course.infra.checkpoint import load_tensors
from ldm_course.metrics import psnr
from ldm_course.perceptual import LPIPS
from ldm_course.pretrained import (
    load_ldm,
    load_vae,
    pretrained_dir,
    shipped_vae_file,
)
from ldm_course.training.evaluate import vae_metrics


def card() -> dict:
    return json.loads((pretrained_dir() / "vae-l1.json").read_text())


def test_l1_vae_loads_as_its_own_vae():
    file = shipped_vae_file(perceptual=False)
    assert file.name == "vae-l1.safetensors"
    tensors, meta = load_tensors(file)
    assert meta["kind"] == "vae" and all(
        v.dtype == torch.float16 for v in tensors.values() if v.is_floating_point()
    )
    l1, default = load_vae(perceptual=False), load_vae()
    assert l1.cfg == default.cfg  # the same architecture
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in l1.parameters())
    # tensor for tensor what the file holds, converted back to float32
    state = l1.state_dict()
    assert all(torch.equal(state[k], v.float()) for k, v in tensors.items())
    # its own encoder: another latent space than the shipped VAE's
    a, b = default.state_dict(), state
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))


def test_l1_vae_choices_are_checked():
    with pytest.raises(ValueError, match="a VAE of its own with one decoder"):
        load_vae(perceptual=False, decoder="adversarial")
    with pytest.raises(ValueError, match="drop perceptual= to load the file"):
        load_vae("runs/some-vae", perceptual=False)
    with pytest.raises(ValueError, match="decoder must be 'lpips' or 'adversarial'"):
        shipped_vae_file("gan", perceptual=False)


def test_the_u_nets_refuse_the_l1_vae():
    """No U-Net was trained on its latents: load_ldm's encoder check says so."""
    with pytest.raises(ValueError, match="trained on the latents of another VAE encoder"):
        load_ldm(vae_path=shipped_vae_file(perceptual=False))


def test_l1_vae_card_records_its_run():
    c = card()
    assert c["run_config"]["perceptual_weight"] == 0
    assert c["run_config"]["steps"] == c["steps"] == 2000
    assert c["run_config"]["freeze_encoder_at"] == 1000
    assert c["training_seconds"] > 0
    assert set(c["metrics_test_split"]) == {
        "vae-l1",
        "vae (the shipped default, L1 + LPIPS, for comparison)",
    }


def test_l1_vae_reconstructs(emoji_batch):
    """A trained autoencoder, not noise: close in pixels on 16 test images."""
    with torch.no_grad():
        vae = load_vae(perceptual=False)
        recon = vae.decode(vae.encode(emoji_batch).mode()).clamp(-1, 1)
    assert psnr(emoji_batch, recon).mean() > 20


@pytest.mark.slow  # both VAEs on the whole test split: about 30 s
def test_card_metrics_are_what_the_evaluation_measures():
    """The card's numbers (measured on one CPU thread) within 1e-3 of the value on this machine."""
    test = twemoji("test").images
    lpips = LPIPS("alex", "stlpips")
    recorded = card()["metrics_test_split"]
    for (name, saved), vae in zip(
        recorded.items(), (load_vae(perceptual=False), load_vae()), strict=True
    ):
        live = vae_metrics(vae, test, lpips)
        for key in ("psnr_db", "ssim", "lpips_alex_stlpips"):
            assert live[key] == pytest.approx(saved[key], rel=1e-3), (name, key)
        assert live["images"] == saved["images"] == 398
