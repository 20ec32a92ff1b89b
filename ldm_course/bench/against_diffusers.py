"""Benchmark 2: our VAE and U-Net against diffusers' AutoencoderKL and UNet2DModel built with the
same widths, depths, attention placement, heads and GroupNorm groups (parameter counts must agree
within PARAM_TOLERANCE). Ratios are ours / diffusers: below 1 means ours is faster.

Where the architectures are the same, differences in time come from how the blocks are written
(our attention: a 1x1 convolution to q, k, v and einops rearranges; diffusers': three Linear layers
on (B, HW, C)) and from the memory layout the tensors end up in. Both models are timed in the
default NCHW layout and in channels_last, and `op_profile` shows which ATen ops differ."""

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from ldm_course.bench.measure import (
    Clock,
    forward,
    forward_backward,
    interleaved_times,
    median,
    num_params,
    paired_ratio,
)
from ldm_course.config import UNetConfig, VAEConfig, to_dict
from ldm_course.unet import UNet
from ldm_course.vae import VAE

PARAM_TOLERANCE = 0.02  # relative difference allowed between the parameter counts


@dataclass(frozen=True)
class DiffusersSizes:
    image_size: int = 64
    vae: VAEConfig = field(default_factory=VAEConfig)
    # the shipped model's setting: class-conditional on Twemoji's 10 categories
    unet: UNetConfig = field(default_factory=lambda: UNetConfig(num_classes=10))
    vae_batch: int = 8
    unet_batch: int = 16
    profile_iters: int = 3


TINY_DIFFUSERS = DiffusersSizes(
    image_size=16,
    vae=VAEConfig(base_channels=8, channel_mult=(1, 2)),
    unet=UNetConfig(base_channels=16, channel_mult=(1, 2), attention_levels=(1,), num_classes=3),
    vae_batch=2,
    unet_batch=2,
    profile_iters=1,
)


def diffusers_vae(cfg: VAEConfig, *, sample_size: int) -> nn.Module:
    """AutoencoderKL with our VAE's layout: one Down/UpDecoderBlock2D per level, layers_per_block =
    num_res_blocks (diffusers' decoder adds one more, as ours does), single-head mid attention,
    no quant_conv / post_quant_conv (our VAE has neither)."""
    from ldm_course.sd_vae import autoencoder_kl_for

    return autoencoder_kl_for(cfg, quant_conv=False, post_quant_conv=False, sample_size=sample_size)


def diffusers_unet(cfg: UNetConfig, *, sample_size: int) -> nn.Module:
    """UNet2DModel with our U-Net's layout: AttnDown/UpBlock2D at our attention levels, the same
    head width everywhere (diffusers takes one attention_head_dim), GroupNorm eps 1e-6, a
    [cos, sin] timestep embedding and one class embedding per class plus the null class."""
    from diffusers import UNet2DModel

    widths = [cfg.base_channels * m for m in cfg.channel_mult]
    attended = [widths[i] for i in cfg.attention_levels] + [widths[-1]]  # + the middle block
    head_dims = {w // cfg.num_heads for w in attended}
    if len(head_dims) != 1:
        raise ValueError(
            f"diffusers uses one attention_head_dim; widths {attended} with "
            f"num_heads={cfg.num_heads} give {sorted(head_dims)}"
        )
    levels = range(len(widths))
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        time_embedding_dim=cfg.time_embed_mult * cfg.base_channels,
        flip_sin_to_cos=True,  # our embedding is [cos, sin]
        freq_shift=0,
        down_block_types=tuple(
            "AttnDownBlock2D" if i in cfg.attention_levels else "DownBlock2D" for i in levels
        ),
        up_block_types=tuple(
            "AttnUpBlock2D" if i in cfg.attention_levels else "UpBlock2D" for i in reversed(levels)
        ),
        block_out_channels=tuple(widths),
        layers_per_block=cfg.num_res_blocks,
        downsample_padding=1,
        dropout=cfg.dropout,
        attention_head_dim=head_dims.pop(),
        norm_num_groups=cfg.norm_groups,
        norm_eps=1e-6,
        num_class_embeds=cfg.num_classes + 1 if cfg.num_classes else None,
    )


def op_profile(fn, *, iters: int, device: torch.device) -> dict[str, tuple[float, int]]:
    """(self time per call in ms, calls per call) of each ATen op over `iters` calls of fn."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(iters):
            fn()
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return {e.key: (getattr(e, attr) / 1e3 / iters, e.count // iters) for e in prof.key_averages()}


def op_differences(ours: dict, theirs: dict, *, top: int) -> list[dict]:
    """The ops whose self time differs most, ours minus diffusers' (ms per call), with their call
    counts: on a busy machine the times are noisy, the counts are exact."""
    rows = []
    for op in set(ours) | set(theirs):
        (t_ours, n_ours), (t_theirs, n_theirs) = ours.get(op, (0.0, 0)), theirs.get(op, (0.0, 0))
        rows.append(
            {
                "op": op,
                "ours_ms": t_ours,
                "diffusers_ms": t_theirs,
                "diff_ms": t_ours - t_theirs,
                "calls_ours": n_ours,
                "calls_diffusers": n_theirs,
            }
        )
    return sorted(rows, key=lambda r: -abs(r["diff_ms"]))[:top]


def against_diffusers(
    sizes: DiffusersSizes,
    *,
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    seed: int = 0,
    clock: Clock = "wall",
    top_ops: int = 12,
) -> dict:
    """Parameter counts; forward and forward+backward times of ours and diffusers' models, in the
    default (NCHW) layout and in channels_last (weights and inputs converted, NHWC in memory)."""
    gen = torch.Generator().manual_seed(seed)
    s, ucfg = sizes.image_size, sizes.unet
    h = s // 2 ** (len(sizes.vae.channel_mult) - 1)  # latent grid side
    x = (torch.rand((sizes.vae_batch, sizes.vae.in_channels, s, s), generator=gen) * 2 - 1).to(
        device
    )
    z = torch.randn((sizes.unet_batch, ucfg.in_channels, h, h), generator=gen).to(device)
    t = torch.randint(0, 1000, (sizes.unet_batch,), generator=gen).to(device)  # (B,)
    y = (
        torch.randint(0, ucfg.num_classes, (sizes.unet_batch,), generator=gen).to(device)
        if ucfg.num_classes
        else None
    )

    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(seed)  # diffusers initialises from the global generator
        pairs = {
            "VAE": (VAE(sizes.vae), diffusers_vae(sizes.vae, sample_size=s)),
            "U-Net": (UNet(ucfg), diffusers_unet(ucfg, sample_size=h)),
        }
    param_rows, time_rows, profiles, times_s = [], [], {}, {}
    for name, (ours, theirs) in pairs.items():
        n_ours, n_theirs = num_params(ours), num_params(theirs)
        rel = n_ours / n_theirs - 1
        param_rows.append(
            {"model": name, "ours": n_ours, "diffusers": n_theirs, "difference_%": 100 * rel}
        )
        if abs(rel) > PARAM_TOLERANCE:
            raise ValueError(
                f"{name}: {n_ours} parameters against diffusers' {n_theirs}; the "
                f"configurations do not match (tolerance {PARAM_TOLERANCE:.0%})"
            )
        runs = {}  # "ours" / "diffusers" (+ "_cl"): (model, forward pass on the same inputs)
        for suffix, fmt in (("", torch.contiguous_format), ("_cl", torch.channels_last)):
            mo = copy.deepcopy(ours).to(device, memory_format=fmt)
            mt = copy.deepcopy(theirs).to(device, memory_format=fmt)
            if name == "VAE":
                xf = x.contiguous(memory_format=fmt)
                runs["ours" + suffix] = (mo, lambda m=mo, xf=xf: m(xf, sample=False)[0])
                runs["diffusers" + suffix] = (
                    mt,
                    lambda m=mt, xf=xf: m(xf, sample_posterior=False, return_dict=False)[0],
                )
            else:
                zf = z.contiguous(memory_format=fmt)
                runs["ours" + suffix] = (mo, lambda m=mo, zf=zf: m(zf, t, y))
                runs["diffusers" + suffix] = (
                    mt,
                    lambda m=mt, zf=zf: m(zf, t, class_labels=y, return_dict=False)[0],
                )
        batch = sizes.vae_batch if name == "VAE" else sizes.unet_batch
        for label, make in (("forward", forward), ("forward+backward", forward_backward)):
            for model, _ in runs.values():
                model.train(label != "forward")
            fns = {k: make(model, run) for k, (model, run) in runs.items()}
            times = interleaved_times(
                fns, repeats=repeats, warmup=warmup, device=device, clock=clock
            )
            times_s[f"{name} {label}"] = times
            time_rows.append(
                {
                    "model": name,
                    "pass": label,
                    "batch": batch,
                    "ours_s": median(times["ours"]),
                    "diffusers_s": median(times["diffusers"]),
                    "ours/diffusers": paired_ratio(times["ours"], times["diffusers"]),
                    "ours_cl/diffusers_cl": paired_ratio(times["ours_cl"], times["diffusers_cl"]),
                    "ours_cl/ours": paired_ratio(times["ours_cl"], times["ours"]),
                    "diffusers_cl/diffusers": paired_ratio(
                        times["diffusers_cl"], times["diffusers"]
                    ),
                }
            )
            if label == "forward+backward":  # its profile holds the forward's ops as well
                prof = {
                    k: op_profile(fns[k], iters=sizes.profile_iters, device=device)
                    for k in ("ours", "diffusers")
                }
                profiles[name] = op_differences(prof["ours"], prof["diffusers"], top=top_ops)
    return {
        "tables": {
            "parameters": param_rows,
            "time (ratios: median of paired ratios; < 1 means the numerator is faster; "
            "_cl = channels_last)": time_rows,
            **{
                f"{key} forward+backward (NCHW): ops whose self time differs most, ms per call": rows
                for key, rows in profiles.items()
            },
        },
        "configs": {
            "vae": to_dict(sizes.vae),
            "unet": to_dict(ucfg),
            "diffusers_vae": _public(pairs["VAE"][1].config),
            "diffusers_unet": _public(pairs["U-Net"][1].config),
        },
        "settings": {
            "image_size": s,
            "vae_batch": sizes.vae_batch,
            "unet_batch": sizes.unet_batch,
            "repeats": repeats,
            "warmup": warmup,
            "clock": clock,
            "profile_iters": sizes.profile_iters,
        },
        "times_s": times_s,
    }


def _public(config) -> dict:
    """A diffusers config without its bookkeeping entries (names starting with _)."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}
