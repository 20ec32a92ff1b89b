"""Stable Diffusion's AutoencoderKL in the course's VAE class (ldm_course/sd_vae.py): the same
function both ways, checked on randomly initialised models in SD's layout, offline."""

import json

import pytest
import torch
from diffusers import AutoencoderKL

from ldm_course.blocks import Downsample
from ldm_course.config import VAEConfig
from ldm_course.sd_vae import load_sd_vae, module_pairs, vae_from_diffusers, vae_to_diffusers
from ldm_course.vae import VAE

ATOL = 1e-4  # fp32, the bound; the measured differences are printed (docs/sd_vae.md)


def sd_autoencoder(widths=(128, 256, 512, 512), groups=32, *, seed=0) -> AutoencoderKL:
    """AutoencoderKL in SD v1's layout (its config.json, but for the widths), every parameter
    random: weights ~ N(0, 1/fan_in) keep activations O(1); biases and GroupNorm affine
    parameters random too, so a misplaced bias or norm shows."""
    torch.manual_seed(seed)
    ae = AutoencoderKL(
        block_out_channels=widths,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=groups,
        sample_size=512,
    )
    randomise(ae, seed=seed)
    return ae.eval()


def randomise(model: torch.nn.Module, *, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=gen)
        if p.ndim >= 2:  # conv / linear weight
            p.data.copy_(r / p[0].numel() ** 0.5)
        elif "norm" in name and name.endswith("weight"):
            p.data.copy_(1 + 0.2 * r)
        else:
            p.data.copy_(0.2 * r)


def images(n=2, size=32, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def max_differences(vae: VAE, ae: AutoencoderKL, x: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        ours, theirs = vae.encode(x), ae.encode(x).latent_dist
        z = torch.randn(ours.mean.shape, generator=torch.Generator().manual_seed(2))
        decoded, decoded_ref = vae.decode(z), ae.decode(z).sample
    assert decoded.abs().max() > 0.1 and ours.mean.abs().max() > 0.1  # not a vanishing signal
    return {
        "mean": (ours.mean - theirs.mean).abs().max().item(),
        "logvar": (ours.logvar - theirs.logvar).abs().max().item(),
        "decoded": (decoded - decoded_ref).abs().max().item(),
    }


SMALL_WIDTHS = (32, 64, 128, 128)  # SD's structure (x1, x2, x4, x4), a quarter of its width


def test_from_diffusers_computes_the_same_function():
    ae = sd_autoencoder(SMALL_WIDTHS, groups=8)
    vae = vae_from_diffusers(ae)
    assert vae.cfg.downsample_padding == "right_bottom" and vae.cfg.post_quant_conv
    diffs = max_differences(vae, ae, images())
    print("diffusers -> course, max |difference|:", diffs)
    assert max(diffs.values()) < ATOL, diffs


def test_to_diffusers_computes_the_same_function():
    cfg = VAEConfig(
        base_channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=2, norm_groups=8,
        downsample_padding="right_bottom", post_quant_conv=True,
    )  # fmt: skip
    vae = VAE(cfg).eval()
    randomise(vae, seed=3)  # the course's zero-initialised layers would hide mistakes
    ae = vae_to_diffusers(vae)
    diffs = max_differences(vae, ae, images())
    print("course -> diffusers, max |difference|:", diffs)
    assert max(diffs.values()) < ATOL, diffs


def test_round_trip_through_diffusers_is_exact():
    ae = sd_autoencoder(SMALL_WIDTHS, groups=8)
    vae = vae_from_diffusers(ae)
    back = vae_from_diffusers(vae_to_diffusers(vae))  # quant_conv = identity folds exactly
    assert back.cfg == vae.cfg
    for key, value in vae.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    # the other way round the weights differ (quant_conv now lives in conv_out), the function not
    again = vae_to_diffusers(vae)
    assert max(max_differences(vae_from_diffusers(again), ae, images()).values()) < ATOL


def test_every_parameter_is_mapped_once():
    ae = sd_autoencoder(SMALL_WIDTHS, groups=8)
    cfg = vae_from_diffusers(ae).cfg
    pairs = module_pairs(cfg)
    ours = [p for p, _ in pairs]
    theirs = [t for _, t in pairs]
    assert len(set(ours)) == len(ours) and len(set(theirs)) == len(theirs)
    # left over: q/k/v (fused into qkv), quant_conv and the encoder's conv_out (folded together)
    left = {k.rsplit(".", 1)[0] for k in ae.state_dict()} - set(theirs)
    attention = {
        f"{p}.mid_block.attentions.0.to_{n}" for p in ("encoder", "decoder") for n in "qkv"
    }
    assert left == attention | {"quant_conv", "encoder.conv_out"}


def test_full_stable_diffusion_layout():
    """SD v1's exact layout (83,653,863 parameters in diffusers), randomly initialised (~6 s)."""
    ae = sd_autoencoder()
    assert sum(p.numel() for p in ae.parameters()) == 83_653_863
    vae = vae_from_diffusers(ae)
    # diffusers' count less quant_conv's 8 x 8 + 8, folded into conv_out
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863 - 72
    diffs = max_differences(vae, ae, images(n=1))
    print("full SD layout, diffusers -> course, max |difference|:", diffs)
    assert max(diffs.values()) < ATOL, diffs
    diffs = max_differences(vae, vae_to_diffusers(vae), images(n=1))
    print("full SD layout, course -> diffusers, max |difference|:", diffs)
    assert max(diffs.values()) < ATOL, diffs


def test_post_quant_conv_cannot_be_folded_into_conv_in():
    """Why the VAE keeps post_quant_conv as a layer: folded into the 3x3 conv_in, its bias would
    be seen in conv_in's zero padding, so only the interior would match."""
    gen = torch.Generator().manual_seed(0)
    post = torch.nn.Conv2d(4, 4, 1)
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    for p in [*post.parameters(), *conv.parameters()]:
        p.data.copy_(torch.randn(p.shape, generator=gen))
    folded = torch.nn.Conv2d(4, 8, 3, padding=1)
    p_w, p_b = post.weight[:, :, 0, 0], post.bias  # (4, 4), (4,)
    folded.weight.data = torch.einsum("oikl,ic->ockl", conv.weight, p_w)
    folded.bias.data = conv.bias + torch.einsum("oikl,i->o", conv.weight, p_b)
    z = torch.randn(1, 4, 6, 6, generator=gen)
    with torch.no_grad():
        diff = (conv(post(z)) - folded(z)).abs()
    assert diff[..., 1:-1, 1:-1].max() < 1e-4  # interior: the fold is exact
    assert diff[..., 0, :].max() > 1e-2  # border: it is not


def test_downsample_padding_default_is_unchanged_and_sd_padding_is_diffusers():
    from diffusers.models.downsampling import Downsample2D

    x = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    ours, sd = Downsample(8), Downsample(8, padding="right_bottom")
    sd.conv.load_state_dict(ours.conv.state_dict())
    theirs = Downsample2D(8, use_conv=True, padding=0)
    theirs.conv.load_state_dict(ours.conv.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(x), torch.nn.functional.conv2d(x, ours.conv.weight, ours.conv.bias, stride=2, padding=1))  # fmt: skip
        torch.testing.assert_close(sd(x), theirs(x), atol=0, rtol=0)
        assert not torch.allclose(ours(x), sd(x))
    with pytest.raises(ValueError, match="must be one of .*'right_bottom'"):
        Downsample(8, padding="left")


def test_shipped_vaes_keep_their_layout():
    """The two SD options default to the course's VAE: the shipped checkpoints load strictly
    (load_weights) into the same parameters as before, none added."""
    from ldm_course.pretrained import load_vae

    for kw in ({}, {"decoder": "adversarial"}, {"perceptual": False}):
        vae = load_vae(**kw)
        assert vae.cfg.downsample_padding == "all_sides" and not vae.cfg.post_quant_conv
        assert not any("post_quant_conv" in k for k in vae.state_dict())


def test_the_course_vae_is_refused_by_vae_to_diffusers():
    with pytest.raises(ValueError, match="downsample_padding='right_bottom'"):
        vae_to_diffusers(VAE(VAEConfig(base_channels=8, norm_groups=4)))


def test_a_layout_the_vae_cannot_hold_is_named():
    ae = AutoencoderKL(
        block_out_channels=(8, 12), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4, act_fn="gelu",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"act_fn 'gelu'.*block_out_channels \(8, 12\)"):
        vae_from_diffusers(ae)
    with pytest.raises(ValueError, match="expected a diffusers AutoencoderKL"):
        vae_from_diffusers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("pipeline", [False, True])
def test_load_sd_vae_reads_a_diffusers_folder(tmp_path, pipeline):
    ae = sd_autoencoder((32, 64, 64, 64), groups=8, seed=4)
    folder = tmp_path / "vae" if pipeline else tmp_path
    ae.save_pretrained(folder)
    if pipeline:
        (tmp_path / "model_index.json").write_text(
            json.dumps({"vae": ["diffusers", "AutoencoderKL"]})
        )
    vae = load_sd_vae(tmp_path)
    assert not any(p.requires_grad for p in vae.parameters())
    assert max(max_differences(vae, ae, images()).values()) < ATOL


def test_load_sd_vae_offline_names_where_the_weights_come_from(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    import diffusers.utils.constants

    monkeypatch.setattr(diffusers.utils.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(OSError) as err:
        load_sd_vae("stabilityai/sd-vae-ft-mse")
    message = str(err.value)
    print(message)
    assert "\n" not in message
    assert "https://huggingface.co/stabilityai/sd-vae-ft-mse" in message
    assert "could not be read from here (HF_HUB_OFFLINE is set)" in message
    assert "not in the local Hugging Face cache (HF_HUB_CACHE" in message
    assert str(tmp_path) not in message  # the same line on every machine (notebook 03 shows it)


def test_load_sd_vae_without_network_is_quick_and_names_the_reason(tmp_path, monkeypatch):
    """No network and no offline flag (a laptop offline): one Hub query fails at once, the cache
    is read, no download retries (diffusers alone retries for ~40 s per file)."""
    import time

    import huggingface_hub
    import huggingface_hub.constants

    def unreachable(name, timeout):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets it
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.perf_counter()
    with pytest.raises(
        OSError, match=r"sd-vae-ft-mse, which could not be read from here \(\[Errno -2\]"
    ):
        load_sd_vae("stabilityai/sd-vae-ft-mse")
    assert time.perf_counter() - start < 10


def test_load_sd_vae_bad_names(tmp_path):
    with pytest.raises(ValueError, match="neither config.json"):
        load_sd_vae(tmp_path)
    with pytest.raises(ValueError, match="not a folder here nor a Hub name"):
        load_sd_vae("no such folder")


@pytest.mark.parametrize(
    ("files", "subfolder"),
    [(["config.json"], None), (["model_index.json", "vae/config.json"], "vae")],
)
def test_load_sd_vae_reads_the_hub_through_diffusers(monkeypatch, files, subfolder):
    """Up to the network call: a VAE repo is read at its root, a pipeline at vae/, by
    AutoencoderKL.from_pretrained."""
    from types import SimpleNamespace

    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets it
    listing = SimpleNamespace(siblings=[SimpleNamespace(rfilename=f) for f in files])
    monkeypatch.setattr(huggingface_hub, "model_info", lambda name, timeout: listing)
    calls = []
    ae = sd_autoencoder((32, 64, 64, 64), groups=8, seed=5)

    def from_pretrained(name, **kwargs):
        calls.append((name, kwargs["subfolder"]))
        return ae

    monkeypatch.setattr(AutoencoderKL, "from_pretrained", from_pretrained)
    vae = load_sd_vae("CompVis/stable-diffusion-v1-4")
    assert calls == [("CompVis/stable-diffusion-v1-4", subfolder)]
    assert max(max_differences(vae, ae, images()).values()) < ATOL


def test_ddim_final_step_is_set_alpha_to_one():
    """docs/sd_vae.md: the course's DDIM ends at alpha_bar = 1 (samplers.ddim_step, t_prev = -1),
    diffusers' DDIMScheduler(set_alpha_to_one=True); Stable Diffusion's pipelines ship
    set_alpha_to_one=False (the last step goes to alpha_bar_0 instead), a different final x."""
    from diffusers import DDIMScheduler

    from ldm_course.samplers import ddim_step
    from ldm_course.schedules import make_schedule

    schedule = make_schedule("scaled_linear")
    gen = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    ours = ddim_step(x_t, eps, 19, -1, schedule)  # the last of 50 steps: t = 19 -> t_prev = -1
    final = {}
    for flag in (True, False):
        scheduler = DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            clip_sample=False, set_alpha_to_one=flag,
        )  # fmt: skip
        scheduler.alphas_cumprod = schedule.alpha_bar.clone()  # only the final alpha_bar differs
        scheduler.set_timesteps(50)
        final[flag] = scheduler.step(eps, 19, x_t, eta=0.0).prev_sample
    same, other = (ours - final[True]).abs().max(), (ours - final[False]).abs().max()
    print(f"final DDIM step: |ours - set_alpha_to_one=True| = {same:.2g}, False: {other:.2g}")
    assert same < 1e-6 and other > 1e-2
