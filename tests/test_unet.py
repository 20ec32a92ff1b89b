import pytest
import torch
from helpers import copy_into_diffusers, param_modules, randomise

from ldm_course.bench.against_diffusers import TINY_DIFFUSERS, diffusers_unet
from ldm_course.blocks import ResBlock, timestep_embedding
from ldm_course.config import UNetConfig
from ldm_course.unet import UNet

CONDITIONAL = UNetConfig(
    base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(), num_classes=3
)


def perturb(unet: UNet) -> None:
    """As after some training: no zero-initialised layer left (they block signals at init)."""
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))


TINY = UNetConfig(
    base_channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), num_heads=2
)


@pytest.mark.parametrize(
    ("cfg", "shape"),
    [
        (TINY, (2, 4, 8, 8)),
        (TINY, (3, 4, 16, 12)),
        (UNetConfig(base_channels=16, num_classes=5), (2, 4, 8, 8)),
        (
            UNetConfig(
                in_channels=3, base_channels=16, channel_mult=(1, 2, 2, 2), attention_levels=(2, 3)
            ),
            (1, 3, 64, 64),
        ),
    ],
)
def test_output_shape_equals_input(cfg, shape):
    unet = UNet(cfg)
    x = torch.randn(shape)
    y = torch.randint(0, 5, (shape[0],)) if cfg.num_classes else None
    assert unet(x, torch.randint(0, 1000, (shape[0],)), y).shape == shape


def test_starts_by_predicting_zero_and_learns_time():
    unet = UNet(TINY)
    x = torch.randn(2, 4, 8, 8)
    assert unet(x, 5).abs().max() == 0  # zero-initialised output convolution
    perturb(unet)  # as after some training
    assert not torch.allclose(unet(x, 5), unet(x, 900))  # the time embedding reaches the output


def test_class_conditioning_and_null_class():
    unet = UNet(CONDITIONAL)
    perturb(unet)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 10])
    null = unet(x, t, torch.tensor([3, 3]))
    assert torch.equal(unet(x, t, None), null)  # y=None is the null class
    assert not torch.allclose(unet(x, t, torch.tensor([0, 0])), null)


def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([0, 1, 500])
    emb = timestep_embedding(t, 8)
    freqs = 10000 ** (-torch.arange(4) / 4)
    torch.testing.assert_close(emb[:, :4], torch.cos(t[:, None] * freqs))
    torch.testing.assert_close(emb[:, 4:], torch.sin(t[:, None] * freqs))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"x": torch.randn(1, 4, 7, 7)},
            r"7x7 is not a multiple of the U-Net's downsampling factor 2",
        ),
        ({"x": torch.randn(1, 3, 8, 8)}, r"x_t must be \(B, 4, H, W\)"),
        ({"t": torch.tensor([1, 2, 3])}, r"t must be a scalar or have shape \(1,\)"),
        ({"y": torch.tensor([0])}, "unconditional"),
    ],
)
def test_clear_errors(kwargs, match):
    args = {"x": torch.randn(1, 4, 8, 8), "t": torch.tensor([1]), "y": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        UNet(TINY)(args["x"], args["t"], args["y"])


def test_bad_class_id():
    unet = UNet(CONDITIONAL)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\]"):
        unet(torch.randn(1, 4, 8, 8), 1, torch.tensor([7]))


def test_matched_diffusers_unet_computes_our_function():
    cfg = TINY_DIFFUSERS.unet
    ours, theirs = UNet(cfg).eval(), diffusers_unet(cfg, sample_size=4).eval()
    randomise(ours)
    z, t, y = torch.randn(2, 4, 4, 4), torch.tensor([3, 900]), torch.tensor([0, cfg.num_classes])
    copy_into_diffusers(
        param_modules(ours, lambda: ours(z, t, y)),
        param_modules(theirs, lambda: theirs(z, t, class_labels=y)),
    )
    with torch.no_grad():
        expected = theirs(z, t, class_labels=y).sample
        torch.testing.assert_close(ours(z, t, y), expected, atol=1e-5, rtol=1e-4)


def test_unet_built_with_the_default_parts_is_unet_of_cfg_bit_for_bit():
    torch.manual_seed(0)
    plain = UNet(CONDITIONAL)
    torch.manual_seed(0)
    parts = UNet(CONDITIONAL, res_block=ResBlock, time_embedding=timestep_embedding)
    assert list(plain.state_dict()) == list(parts.state_dict())
    assert all(
        torch.equal(a, b)
        for a, b in zip(plain.state_dict().values(), parts.state_dict().values(), strict=True)
    )
    perturb(plain), perturb(parts)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.tensor([0, 2])
    with torch.no_grad():
        assert torch.equal(plain(x, t, y), parts(x, t, y))


def test_unet_calls_a_custom_time_embedding_and_res_block():
    calls = []

    def embedding(t, dim):
        calls.append(dim)
        return timestep_embedding(t, dim)

    class Block(ResBlock):
        built = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            Block.built += 1

    unet = UNet(CONDITIONAL, res_block=Block, time_embedding=embedding)
    assert Block.built == sum(isinstance(m, ResBlock) for m in unet.modules()) > 0
    assert set(UNet(CONDITIONAL).state_dict()) == set(unet.state_dict())
    with torch.no_grad():
        unet(torch.randn(2, 4, 8, 8), torch.tensor([1, 2]))
    assert calls == [CONDITIONAL.base_channels]
