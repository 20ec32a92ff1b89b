import json

import pytest
import torch

from ldm_course.config import (
    UNetConfig,
    VAEConfig,
    from_dict,
    ldm_preset,
    override,
    to_dict,
    vae_preset,
)
from ldm_course.data import twemoji
from ldm_course.infra.checkpoint import atomic_write, load_tensors, load_weights, save_tensors
from ldm_course.pretrained import load_ldm, load_unet, load_vae
from ldm_course.vae import VAE

TINY = VAEConfig(base_channels=4, norm_groups=4)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("old")

    def broken(p):
        p.write_text("half-writ")
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary left behind


def test_roundtrip_and_metadata(tmp_path):
    t = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2])}
    save_tensors(tmp_path / "f.safetensors", t, {"step": 7, "nested": {"x": [1, 2]}})
    back, meta = load_tensors(tmp_path / "f.safetensors")
    assert meta == {"step": 7, "nested": {"x": [1, 2]}}
    assert all(torch.equal(t[k], back[k]) for k in t)


def test_missing_and_truncated_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tensors(tmp_path / "nope.safetensors")
    save_tensors(tmp_path / "f.safetensors", {"a": torch.zeros(1000)})
    data = (tmp_path / "f.safetensors").read_bytes()
    (tmp_path / "f.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or truncated"):
        load_tensors(tmp_path / "f.safetensors")
    with pytest.raises(ValueError, match="damaged or truncated"):
        load_vae(tmp_path / "f.safetensors")


def test_config_mismatch_names_the_problem(tmp_path):
    vae = VAE(TINY)
    save_tensors(
        tmp_path / "model.safetensors",
        vae.state_dict(),
        {"kind": "vae", "config": to_dict(VAEConfig(base_channels=8))},
    )
    with pytest.raises(ValueError, match=r"do not match the model config.*shape mismatches"):
        load_vae(tmp_path)
    save_tensors(
        tmp_path / "model.safetensors",
        vae.state_dict(),
        {"kind": "vae", "config": {**to_dict(TINY), "wings": 2}},
    )
    with pytest.raises(ValueError, match=r"\['wings'\] are not fields of VAEConfig"):
        load_vae(tmp_path)
    save_tensors(
        tmp_path / "model.safetensors", vae.state_dict(), {"kind": "vae", "config": to_dict(TINY)}
    )
    with pytest.raises(ValueError, match="not a U-Net"):
        load_unet(tmp_path)
    with pytest.raises(ValueError, match="missing"):
        load_weights(VAE(TINY), {}, source="empty")
    assert isinstance(load_vae(tmp_path), VAE)


def test_config_dict_roundtrip_and_overrides():
    cfg = ldm_preset("cpu-full")
    assert from_dict(type(cfg), json.loads(json.dumps(to_dict(cfg)))) == cfg
    cfg2 = override(
        cfg, ["steps=10", "unet.base_channels=32", "unet.attention_levels=1,2", "conditional=false"]
    )
    assert (cfg2.steps, cfg2.unet.base_channels, cfg2.unet.attention_levels, cfg2.conditional) == (
        10,
        32,
        (1, 2),
        False,
    )
    with pytest.raises(ValueError, match="unknown setting 'stepz=3'"):
        override(cfg, ["stepz=3"])
    with pytest.raises(ValueError, match="cannot parse 'steps=many'"):
        override(cfg, ["steps=many"])
    with pytest.raises(ValueError, match="must look like key=value"):
        override(cfg, ["steps"])
    with pytest.raises(
        ValueError, match="unknown preset 'cpu-turbo'; choose one of cpu-fast, cpu-full, gpu"
    ):
        vae_preset("cpu-turbo")
    assert UNetConfig() == from_dict(UNetConfig, to_dict(UNetConfig()))


def test_shipped_checkpoints_load_offline():
    vae = load_vae()
    assert vae.downsample_factor == 8 and vae.cfg.latent_channels == 4
    ldm = load_ldm()
    assert ldm.scale_factor > 0 and len(ldm.class_names) == 10
    assert ldm.unet.cfg.num_classes == 10


def test_shipped_subcategory_unet_loads_with_its_99_labels():
    ldm = load_ldm(labels="subcategory")
    assert ldm.unet.cfg.num_classes == 99
    assert ldm.class_names == twemoji("test", labels="subcategory").class_names
    assert ldm.scale_factor == load_ldm().scale_factor  # same VAE and training images
    with pytest.raises(ValueError, match="labels must be 'category' or 'subcategory'"):
        load_unet(labels="emoji")
    with pytest.raises(ValueError, match="a U-Net file carries its own class names"):
        load_unet("runs/some-ldm", labels="subcategory")


def test_shipped_adversarial_decoder_shares_the_shipped_encoder():
    """Both shipped decoders belong to one encoder, so one latent space and one scale factor."""
    lpips_vae, adversarial = load_vae(), load_vae(decoder="adversarial")
    a, b = lpips_vae.state_dict(), adversarial.state_dict()
    encoder = [k for k in a if k.startswith("encoder.")]
    assert encoder and all(torch.equal(a[k], b[k]) for k in encoder)
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    ldm = load_ldm(decoder="adversarial")
    assert ldm.scale_factor == load_ldm().scale_factor
    with pytest.raises(ValueError, match="decoder must be 'lpips' or 'adversarial'"):
        load_vae(decoder="gan")
    with pytest.raises(ValueError, match="drop decoder= to load the file"):
        load_vae("runs/some-vae", decoder="adversarial")
