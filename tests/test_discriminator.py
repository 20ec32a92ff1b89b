"""The adversarial decoder term: hinge losses against their closed form, the receptive field by
perturbation, the adaptive weight against a hand-computed gradient ratio, and that one backward
pass of the combined loss gives each player exactly its own loss's gradient."""

import torch
from torch import nn

from ldm_course.config import DiscriminatorConfig
from ldm_course.discriminator import (
    PatchDiscriminator,
    adaptive_weight,
    adversarial_terms,
    generator_loss,
    hinge_d_loss,
)


def test_hinge_losses_match_their_closed_form():
    real = torch.tensor([2.0, 0.5, -1.0, 1.0])
    fake = torch.tensor([-3.0, 0.25, -1.0, 2.0])
    # max(0, 1 - r): 0, 0.5, 2, 0 -> mean 0.625; max(0, 1 + f): 0, 1.25, 0, 3 -> mean 1.0625
    assert torch.isclose(hinge_d_loss(real, fake), torch.tensor(0.5 * (0.625 + 1.0625)))
    assert torch.isclose(generator_loss(fake), torch.tensor(-(-3.0 + 0.25 - 1.0 + 2.0) / 4))


def test_each_logit_sees_exactly_its_receptive_field():
    for layers, field in ((2, 34), (3, 70)):
        disc = PatchDiscriminator(DiscriminatorConfig(base_channels=8, num_layers=layers))
        assert disc.receptive_field == field
    disc = PatchDiscriminator(DiscriminatorConfig(base_channels=8, num_layers=2))
    # GroupNorm pools statistics over the whole image; without it, locality is exact
    for i, layer in enumerate(disc.layers):
        if isinstance(layer, nn.GroupNorm):
            disc.layers[i] = nn.Identity()
    x = torch.zeros(1, 3, 64, 64)
    base = disc(x)
    assert base.shape == (1, 1, 64 // 4 - 2, 64 // 4 - 2)
    y = x.clone()
    y[..., 0, 0] = 1.0  # one corner pixel
    changed = (disc(y) - base).abs()[0, 0] > 0  # (14, 14)
    # logit (i, j) covers input rows 4 i - 11 ... 4 i + 22 (34 rows; jumps 1, 2, 4, 4 times padding
    # 1 each: 11 rows of padding before row 0), so the corner pixel reaches logits i, j <= 2 only
    assert changed[:3, :3].all() and not changed[3:].any() and not changed[:, 3:].any()


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    torch.manual_seed(0)
    last = nn.Linear(5, 3)
    h = torch.randn(7, 5)
    out = last(h)
    nll = out.abs().mean()
    g = -(out * torch.randn(7, 3)).mean()
    lam = adaptive_weight(nll, g, last.weight)
    a = torch.autograd.grad(nll, last.weight, retain_graph=True)[0].norm()
    b = torch.autograd.grad(g, last.weight, retain_graph=True)[0].norm()
    assert torch.isclose(lam, a / (b + 1e-4))
    # scale-free up to delta: ten times the adversarial loss, a tenth of the weight
    assert torch.isclose(adaptive_weight(nll, 10 * g, last.weight), a / (10 * b + 1e-4))


def tiny_players(batch: int):
    """A one-convolution "decoder", a small discriminator, images x in [-1, 1] and inputs z."""
    torch.manual_seed(0)
    decoder = nn.Conv2d(3, 3, 3, padding=1)
    disc = PatchDiscriminator(DiscriminatorConfig(base_channels=8, num_layers=2))
    x, z = torch.rand(batch, 3, 32, 32) * 2 - 1, torch.randn(batch, 3, 32, 32)
    return decoder, disc, x, z


def test_one_backward_gives_each_player_only_its_own_gradient():
    decoder, disc, x, z = tiny_players(4)
    recon = decoder(z)
    nll = (recon - x).abs().mean()
    loss, parts = adversarial_terms(disc, x, recon, nll=nll, last_layer=decoder.weight, weight=0.5)
    loss.backward()
    got_dec = decoder.weight.grad.clone()
    got_disc = [p.grad.clone() for p in disc.parameters()]

    # the same gradients computed separately: the decoder from 0.5 lambda L_G alone ...
    decoder.zero_grad(), disc.zero_grad()
    recon = decoder(z)
    nll = (recon - x).abs().mean()
    g = generator_loss(disc(recon))
    lam = adaptive_weight(nll, g, decoder.weight)
    (want_dec,) = torch.autograd.grad(0.5 * lam * g, decoder.weight, retain_graph=True)
    # ... and the discriminator from L_D alone
    want_disc = torch.autograd.grad(
        hinge_d_loss(disc(x), disc(recon.detach())), list(disc.parameters())
    )
    assert torch.allclose(got_dec, want_dec, atol=1e-7)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(got_disc, want_disc, strict=True))
    assert abs(parts["adv_weight"] - 0.5 * lam.item()) < 1e-6


def test_weight_zero_trains_the_discriminator_alone():
    decoder, disc, x, z = tiny_players(2)
    recon = decoder(z)
    loss, parts = adversarial_terms(
        disc, x, recon, nll=recon.abs().mean(), last_layer=decoder.weight, weight=0.0
    )
    loss.backward()
    assert decoder.weight.grad is None and parts["adv_weight"] == 0.0
    assert all(p.grad is not None for p in disc.parameters())
