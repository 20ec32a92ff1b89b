"""course/progress.py: snapshots taken through the watch hook at the steps asked for, the figure,
and a run that trains the same weights with or without them."""

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from run_helpers import TINY_LDM, TINY_VAE, ldm_run, tiny_data, vae_run

from ldm_course.config import VAEConfig
from ldm_course.course.progress import (
    ReconstructionFrames,
    SampleFrames,
    plot_progression,
    progress_steps,
)
from ldm_course.vae import VAE


def test_progress_steps_rounds_fractions_of_the_run():
    assert progress_steps(200) == (0, 20, 50, 100, 200)
    assert progress_steps(3) == (0, 1, 2, 3)  # round(0.1 * 3) = 0 = round(0 * 3): once
    with pytest.raises(ValueError, match=r"fractions must lie in \[0, 1\]"):
        progress_steps(10, (0, 1.5))


def test_reconstruction_frames_record_the_steps_and_the_figure_shows_them(tmp_path):
    images = tiny_data().images[:3]
    frames = ReconstructionFrames(images)
    cfg = replace(TINY_VAE, steps=4)
    vae, history = vae_run(tmp_path / "r", cfg, watch=frames, watch_at=progress_steps(4))
    assert sorted(frames.frames) == [0, 1, 2, 4]
    assert frames.frames[0].shape == (3, 3, 32, 32) and frames.frames[0].device.type == "cpu"
    with torch.no_grad():  # the last frame is the trained VAE's own reconstruction
        last = vae.decode(vae.encode(images).mode()).clamp(-1, 1)
    assert torch.equal(frames.frames[4], last)
    assert not torch.equal(frames.frames[0], frames.frames[4])
    fig = plot_progression(frames.frames, history, key="total", title="VAE")
    labels = [ax.get_ylabel() for ax in fig.axes[:-1]]
    assert labels == ["step 0 (0 %)", "step 1 (25 %)", "step 2 (50 %)", "step 4 (100 %)"]
    marked = [line.get_xdata()[0] for line in fig.axes[-1].lines[1:]]
    assert marked == [0, 1, 2, 4]  # the snapshot steps on the loss curve


def test_sample_frames_follow_one_noise_and_leave_the_weights_unchanged(tmp_path):
    torch.manual_seed(0)
    vae = VAE(VAEConfig(base_channels=4, norm_groups=4))
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    frames = SampleFrames(noise, torch.tensor([0, 1]), steps=3, guidance_scale=2.0)
    cfg = replace(TINY_LDM, steps=3)
    ldm_a, _ = ldm_run(tmp_path / "a", vae, cfg)
    ldm_b, history = ldm_run(tmp_path / "b", vae, cfg, watch=frames, watch_at=(0, 3))
    a, b = ldm_a.unet.state_dict(), ldm_b.unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(frames.frames) == [0, 3] and frames.frames[3].shape == (2, 3, 32, 32)
    again = SampleFrames(noise, torch.tensor([0, 1]), steps=3, guidance_scale=2.0)
    again(3, ldm_b)  # the trained (EMA) model, sampled from the same noise
    assert torch.equal(again.frames[3], frames.frames[3])
    assert frames.frames[0].abs().max() <= 1
    fig = plot_progression(frames.frames, history)
    assert len(fig.axes) == 3


def test_bad_inputs_name_the_fix():
    with pytest.raises(ValueError, match=r"noise must be \(N, C, h, w\)"):
        SampleFrames(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match=r"y must hold one label per noise"):
        SampleFrames(torch.zeros(2, 4, 2, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"no frames"):
        plot_progression({}, {"step": [1], "loss": [1.0]})
