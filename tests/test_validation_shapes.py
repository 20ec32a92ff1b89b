"""Shapes checked against the data before a run folder is written: image size against the VAE's
factor, latent size against the U-Net's, class count, attention levels, timesteps against the
preview sampler. Each refusal leaves no folder behind, so a corrected rerun there just works."""

import json
from dataclasses import replace

import pytest
import torch
from PIL import Image
from run_helpers import TINY_LDM, TINY_VAE, ldm_run, vae_run

from ldm_course.cli.main import main
from ldm_course.vae import VAE


def image_folder(root, size: int, classes=("a", "b"), per_class: int = 2):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (size, size), (60 * i, 30, 90)).save(root / c / f"{i}.png")
    return str(root)


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    return VAE(TINY_VAE.vae).eval()  # f = 8: 32x32 images -> 4x4 latents


def test_a_size_that_is_not_a_multiple_of_the_vae_factor_is_refused(tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", 12)
    run = tmp_path / "r"
    code = main(
        ["train-vae", "--device", "cpu", "--data", data, "--run-dir", str(run)]
        + ["--set", "size=12", "--set", "batch_size=2"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "size=12 is not a multiple of the VAE's downsampling factor 8" in err
    assert "--set size=16" in err and not run.exists()


def test_latents_smaller_than_the_unet_factor_are_refused(tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", 16)
    run = tmp_path / "r"
    code = main(
        ["train-ldm", "--device", "cpu", "--data", data, "--run-dir", str(run)]
        + ["--set", "size=16", "--set", "batch_size=2"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "size=16 gives 2x2 latents" in err and "U-Net's factor 4" in err
    assert "--set size=32" in err and not run.exists()


def test_images_of_another_size_than_the_setting_are_refused(tmp_path, tiny_vae):
    with pytest.raises(ValueError, match="the images are 32x32, but size=64"):
        vae_run(tmp_path / "v", replace(TINY_VAE, size=64))
    with pytest.raises(ValueError, match="the images are 32x32, but size=64"):
        ldm_run(tmp_path / "l", tiny_vae, replace(TINY_LDM, size=64))
    assert not (tmp_path / "v").exists() and not (tmp_path / "l").exists()


@pytest.mark.parametrize(
    "unet, conditional, message",
    [
        ({"num_classes": 5}, True, "unet.num_classes=5, but the data has 2 classes"),
        ({"num_classes": 2}, False, "unet.num_classes=2, but conditional=False"),
        (
            {"attention_levels": (7,)},
            True,
            r"level\(s\) \[7\] do not exist; the U-Net has levels 0..2",
        ),
        ({"in_channels": 3}, True, "unet.in_channels=3, but the VAE's latents have 4 channels"),
    ],
)
def test_unet_settings_that_do_not_fit_the_data_are_refused(
    tmp_path, tiny_vae, unet, conditional, message
):
    cfg = replace(TINY_LDM, conditional=conditional, unet=replace(TINY_LDM.unet, **unet))
    with pytest.raises(ValueError, match=message):
        ldm_run(tmp_path / "r", tiny_vae, cfg)
    assert not (tmp_path / "r").exists()


def test_attention_levels_outside_the_unet_are_refused_from_the_cli(tmp_path, capsys):
    data = image_folder(tmp_path / "imgs", 64)
    run = tmp_path / "r"
    code = main(
        ["train-ldm", "--device", "cpu", "--data", data, "--run-dir", str(run)]
        + ["--set", "unet.attention_levels=7", "--set", "batch_size=2"]
    )
    assert code == 2 and "do not exist" in capsys.readouterr().err and not run.exists()


def test_fewer_timesteps_than_the_preview_sampler_are_refused(tmp_path, tiny_vae):
    cfg = replace(TINY_LDM, num_train_timesteps=10, sample_every=1)
    with pytest.raises(ValueError, match="num_train_timesteps=10 is fewer than the 25 DDIM steps"):
        ldm_run(tmp_path / "r", tiny_vae, cfg)
    assert not (tmp_path / "r").exists()


def test_config_json_records_the_class_count_the_model_is_built_with(tmp_path, tiny_vae):
    ldm, _ = ldm_run(tmp_path / "r", tiny_vae)  # num_classes not set: follows the data (2)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["unet"]["num_classes"] == ldm.unet.cfg.num_classes == 2
    # an explicit value that matches is accepted, and the resume of that run too
    cfg = replace(TINY_LDM, unet=replace(TINY_LDM.unet, num_classes=2))
    ldm2, _ = ldm_run(tmp_path / "r2", tiny_vae, cfg)
    assert ldm2.unet.cfg.num_classes == 2
    ldm_run(tmp_path / "r2", tiny_vae, cfg, resume=True)
