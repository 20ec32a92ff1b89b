"""The adversarial term of the latent-diffusion autoencoder (Esser et al. 2021, "Taming
Transformers", sec. 3.1; Rombach et al. 2022, sec. 3.1): a PatchGAN discriminator (Isola et al.
2017, pix2pix) that calls each overlapping patch of an image real or decoded, its hinge loss, and
the adaptive weight that balances it against the reconstruction loss.

L1 + LPIPS reward the decoder for the average of the images a latent could mean; where a latent is
ambiguous (and a diffusion model's latents often are) that average is a soft blend. The
discriminator penalises blends that no real image looks like, so edges stay sharp.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ldm_course.blocks import group_norm
from ldm_course.config import DiscriminatorConfig


class PatchDiscriminator(nn.Module):
    """x (B, 3, H, W) in [-1, 1] -> logits (B, 1, h, w), one per overlapping patch.

    num_layers strided 4x4 convolutions, then two stride-1 4x4 convolutions (pix2pix's 70x70
    PatchGAN for num_layers=3; GroupNorm instead of BatchNorm, so a logit depends on its own image
    only and a batch of one scores like a batch of many). The receptive field of one logit is
    1 + 3 (2^num_layers - 1) + 3 * 2^num_layers * 2 pixels: 34 for num_layers=2, 70 for 3.
    """

    def __init__(self, cfg: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.cfg = cfg
        widths = [cfg.base_channels * min(2**i, 8) for i in range(cfg.num_layers + 1)]
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.in_channels, widths[0], 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        for i in range(1, cfg.num_layers + 1):
            stride = 2 if i < cfg.num_layers else 1
            layers += [
                nn.Conv2d(widths[i - 1], widths[i], 4, stride=stride, padding=1, bias=False),
                group_norm(widths[i], cfg.norm_groups),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, 1, H / 2^L - 2, W / 2^L - 2), L = num_layers

    @property
    def receptive_field(self) -> int:
        n = self.cfg.num_layers
        return 1 + 3 * (2**n - 1) + 3 * 2**n * 2


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """L_D = 1/2 (E[max(0, 1 - D(x))] + E[max(0, 1 + D(x_hat))])  (Lim & Ye 2017; Taming's loss)."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """L_G = -E[D(x_hat)]: the decoder raises the discriminator's score of its reconstructions."""
    return -logits_fake.mean()


def adaptive_weight(
    nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, *, delta: float = 1e-4
) -> torch.Tensor:
    """lambda = ||grad_{W_L} L_rec|| / (||grad_{W_L} L_G|| + delta)  (Taming eq. 7), W_L the
    decoder's last weight: the adversarial gradient arrives at the decoder with the size of the
    reconstruction gradient, whatever the scale of either loss. Clamped to [0, 1e4], detached."""
    g_nll = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (g_nll.norm() / (g_adv.norm() + delta)).clamp(0.0, 1e4).detach()


def adversarial_terms(
    disc: PatchDiscriminator,
    x: torch.Tensor,
    recon: torch.Tensor,
    *,
    nll: torch.Tensor,
    last_layer: torch.Tensor,
    weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Both players' losses in one scalar, for one backward pass and one optimizer step:

        weight * lambda * L_G(D frozen)  +  L_D(x, x_hat detached)

    L_G sees the discriminator through detached parameters, so its gradient reaches the decoder
    only; L_D sees the reconstruction detached, so its gradient reaches the discriminator only.
    Both players therefore step from the same state (simultaneous gradient descent). weight = 0
    (before adversarial_start) trains the discriminator alone. x, recon: (B, 3, H, W).
    """
    frozen = {name: p.detach() for name, p in disc.named_parameters()}
    g_loss = generator_loss(functional_call(disc, frozen, (recon,)))
    logits_real, logits_fake = disc(x), disc(recon.detach())
    d_loss = hinge_d_loss(logits_real, logits_fake)
    parts = {
        "d_loss": d_loss.item(),
        "g_adv": g_loss.item(),
        "logits_real": logits_real.mean().item(),
        "logits_fake": logits_fake.mean().item(),
    }
    if weight <= 0:
        return d_loss, {**parts, "adv_weight": 0.0}
    lam = adaptive_weight(nll, g_loss, last_layer)
    return weight * lam * g_loss + d_loss, {**parts, "adv_weight": weight * lam.item()}
