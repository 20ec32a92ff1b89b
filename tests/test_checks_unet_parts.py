"""Notebook 04's U-Net part checks: a correct answer passes (also one written differently from the
reference), each named misconception is recognised, an unrelated wrong answer fails unnamed."""

import math

import pytest
import torch
import torch.nn.functional as F

from ldm_course.blocks import ResBlock, timestep_embedding
from ldm_course.course.checks.unet_parts import (
    DDPM_MISCONCEPTIONS,
    EMBEDDING_MISCONCEPTIONS,
    RES_BLOCK_MISCONCEPTIONS,
    check_ddpm_step,
    check_res_block,
    check_timestep_embedding,
)


def eq11_step(x_t, eps, t, noise, schedule):
    """DDPM eq. 11 as a learner writes it (not the package's posterior-mean form)."""
    beta, alpha = schedule.betas[t].item(), schedule.alphas[t].item()
    a_bar, a_bar_prev = schedule.alpha_bar[t].item(), schedule.alpha_bar_prev[t].item()
    mean = (x_t - beta / math.sqrt(1 - a_bar) * eps) / math.sqrt(alpha)
    if t == 0:
        return mean
    return mean + math.sqrt((1 - a_bar_prev) / (1 - a_bar) * beta) * noise


class LearnerResBlock(torch.nn.Module):
    """The same block written from scratch, as the exercise asks."""

    def __init__(self, in_channels, out_channels, *, groups, temb_dim=None, dropout=0.0):
        super().__init__()
        self.norm1 = torch.nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb = torch.nn.Linear(temb_dim, out_channels)
        self.norm2 = torch.nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.dropout = torch.nn.Dropout(dropout)
        self.conv2 = torch.nn.Conv2d(out_channels, out_channels, 3, padding=1)
        torch.nn.init.zeros_(self.conv2.weight)
        torch.nn.init.zeros_(self.conv2.bias)
        same = in_channels == out_channels
        self.skip = torch.nn.Identity() if same else torch.nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class NotZeroInit(LearnerResBlock):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        torch.nn.init.ones_(self.conv2.bias)


class DoubledResBlock(LearnerResBlock):
    def forward(self, x, temb):
        return 2 * super().forward(x, temb) + 0.1


def correct_embedding(t, dim):
    half = dim // 2
    w = 10000.0 ** (-torch.arange(half) / half)  # written another way than the reference
    return torch.cat([torch.cos(t[:, None] * w), torch.sin(t[:, None] * w)], dim=1)


def unattempted(*args, **kwargs):
    raise NotImplementedError


@pytest.mark.parametrize(
    "check, answer",
    [
        (check_timestep_embedding, timestep_embedding),
        (check_timestep_embedding, correct_embedding),
        (check_res_block, ResBlock),
        (check_res_block, LearnerResBlock),
        (check_ddpm_step, eq11_step),
    ],
)
def test_a_correct_answer_passes(check, answer):
    result = check(answer, quiet=True)
    assert result.passed, result.message


CASES = [
    (check, m)
    for check, table in (
        (check_timestep_embedding, EMBEDDING_MISCONCEPTIONS),
        (check_ddpm_step, DDPM_MISCONCEPTIONS),
    )
    for m in table
] + [(check_res_block, m) for m in RES_BLOCK_MISCONCEPTIONS]


@pytest.mark.parametrize("check, misconception", CASES, ids=[m.name for _, m in CASES])
def test_each_misconception_is_recognised(check, misconception):
    answer = misconception.fn
    if check is check_res_block:
        answer = misconception.fn.block_cls  # the check takes the class
    result = check(answer, quiet=True)
    assert result.status == "failed"
    assert result.message.startswith(f"❌ {result.name}: looks like {misconception.name}: ")
    assert "see " in misconception.hint and misconception.hint in result.message


@pytest.mark.parametrize(
    "check, answer",
    [
        (check_timestep_embedding, lambda t, dim: torch.zeros(len(t), dim)),
        (check_res_block, DoubledResBlock),
        (check_ddpm_step, lambda x_t, eps, t, noise, schedule: x_t - eps),
    ],
)
def test_an_unrelated_wrong_answer_fails_unnamed(check, answer):
    result = check(answer, quiet=True)
    assert result.status == "failed" and "looks like" not in result.message, result.message


def test_res_block_must_start_with_conv2_at_zero():
    result = check_res_block(NotZeroInit, quiet=True)
    assert result.status == "failed" and "conv2 must start at zero" in result.message


@pytest.mark.parametrize("check", [check_timestep_embedding, check_res_block, check_ddpm_step])
def test_unattempted_is_reported_not_raised(check):
    assert check(unattempted, quiet=True).status == "not attempted"
