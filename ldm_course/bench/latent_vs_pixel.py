"""Benchmark 1: the same U-Net family denoising 4x8x8 VAE latents versus 3x64x64 pixels.

The latent model is the course's default UNetConfig (levels at 8, 4, 2; attention at 4 and 2).
The pixel model follows the DDPM recipe for 64x64 images (Ho et al. 2020, appendix B; Nichol &
Dhariwal 2021 for ImageNet 64): the same widths and blocks, plus the levels needed to go from 64x64
down to 8x8, with attention only at 16x16 and 8x8. So its lowest resolution is the latent's grid,
and attention never runs at 64x64 or 32x32, where one head would compare 4,096 positions with
4,096. Sampling time for the latent model includes the VAE decode; the pixel model has none. The
latent training step runs on cached latents (train_ldm.py encodes the training set once), so the
encoder is not part of it.
"""

from dataclasses import dataclass, field

import torch

from ldm_course.bench.measure import (
    MIB,
    Clock,
    count_flops,
    interleaved_times,
    median,
    num_params,
    paired_ratio,
    peak_memory,
    training_step,
)
from ldm_course.config import UNetConfig, VAEConfig, to_dict
from ldm_course.diffusion import LatentDiffusion
from ldm_course.samplers import ddim_sample
from ldm_course.schedules import make_schedule
from ldm_course.unet import UNet
from ldm_course.vae import VAE


@dataclass(frozen=True)
class LatentVsPixelSizes:
    image_size: int = 64
    vae: VAEConfig = field(default_factory=VAEConfig)  # f = 8: 3x64x64 -> 4x8x8
    latent_unet: UNetConfig = field(default_factory=UNetConfig)
    # levels at 64, 32, 16, 8; widths 64, 128, 128, 128 as in the latent model; attention at 16, 8
    pixel_unet: UNetConfig = field(
        default_factory=lambda: UNetConfig(
            in_channels=3, channel_mult=(1, 2, 2, 2), attention_levels=(2, 3)
        )
    )
    train_batch: int = 8
    sample_batch: int = 1  # pixel sampling costs ~17 s per image on one CPU thread
    sample_steps: int = 50  # DDIM steps


TINY_LATENT_VS_PIXEL = LatentVsPixelSizes(
    image_size=16,
    vae=VAEConfig(base_channels=8, channel_mult=(1, 1, 1, 1)),  # 3x16x16 -> 4x2x2
    latent_unet=UNetConfig(base_channels=16, channel_mult=(1,), attention_levels=(0,)),
    pixel_unet=UNetConfig(
        in_channels=3, base_channels=16, channel_mult=(1, 1), num_heads=1, attention_levels=(1,)
    ),
    train_batch=2,
    sample_batch=1,
    sample_steps=2,
)


def latent_vs_pixel(
    sizes: LatentVsPixelSizes,
    *,
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    seed: int = 0,
    clock: Clock = "wall",
) -> dict:
    """Values, parameters, FLOPs, training-step time and memory, and sampling time of both models;
    every row has the ratio pixel / latent."""
    gen = torch.Generator().manual_seed(seed)
    vae = VAE(sizes.vae).to(device).eval()  # random weights: the cost does not depend on them
    latent = UNet(sizes.latent_unet).to(device)
    pixel = UNet(sizes.pixel_unet).to(device)
    f = vae.downsample_factor
    s = sizes.image_size
    latent_shape = (sizes.vae.latent_channels, s // f, s // f)  # (C_z, h, w)
    pixel_shape = (sizes.pixel_unet.in_channels, s, s)  # (3, H, W)
    schedule = make_schedule("linear", 1000)
    ldm = LatentDiffusion(vae, latent, schedule, scale_factor=1.0, image_size=s)

    def call(model: UNet, shape: tuple[int, ...], batch: int):
        x = torch.randn((batch, *shape), generator=gen).to(device)  # (B, C, H, W)
        t = torch.randint(0, 1000, (batch,), generator=gen).to(device)  # (B,)
        return lambda: model(x, t)

    def flops_per_step(model: UNet, shape: tuple[int, ...]) -> int:
        with torch.no_grad():
            return count_flops(call(model, shape, 1))

    def sample_latent(steps: int):
        return lambda: ldm.generate(
            sizes.sample_batch,
            steps=steps,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )

    def sample_pixel(steps: int):
        return lambda: ddim_sample(
            lambda x, t: pixel(x, t),
            (sizes.sample_batch, *pixel_shape),
            schedule,
            num_steps=steps,
            generator=torch.Generator().manual_seed(seed),
            device=device,
            progress=False,
        )

    train = {
        "latent": training_step(latent, call(latent, latent_shape, sizes.train_batch)),
        "pixel": training_step(pixel, call(pixel, pixel_shape, sizes.train_batch)),
    }
    train_times = interleaved_times(
        train, repeats=repeats, warmup=warmup, device=device, clock=clock
    )
    latent.zero_grad(set_to_none=True)  # the measured step allocates its own gradients
    pixel.zero_grad(set_to_none=True)
    train_peak = {k: peak_memory(fn, device=device) for k, fn in train.items()}
    latent.eval()
    pixel.eval()
    sample = {
        "latent": sample_latent(sizes.sample_steps),
        "pixel": sample_pixel(sizes.sample_steps),
    }
    short = {"latent": sample_latent(2), "pixel": sample_pixel(2)}  # warm-up stand-ins
    sample_times = interleaved_times(
        sample, repeats=repeats, warmup=warmup, device=device, clock=clock, warmup_fns=short
    )
    # Every denoising step allocates the same, so 2 steps show the peak of 50.
    sample_peak = {k: peak_memory(fn, device=device) for k, fn in short.items()}

    with torch.no_grad():
        z = torch.randn((1, *latent_shape), generator=gen).to(device)  # (1, C_z, h, w)
        decode_flops = count_flops(lambda: vae.decode(z))
    step_flops = {
        "latent": flops_per_step(latent, latent_shape),
        "pixel": flops_per_step(pixel, pixel_shape),
    }
    n = sizes.sample_steps
    b, tb = sizes.sample_batch, sizes.train_batch
    rows = [
        _row("values per sample", _numel(latent_shape), _numel(pixel_shape)),
        _row("U-Net parameters (M)", num_params(latent) / 1e6, num_params(pixel) / 1e6),
        _row(
            "parameters for sampling, U-Net + decoder (M)",
            (num_params(latent) + num_params(vae.decoder)) / 1e6,
            num_params(pixel) / 1e6,
        ),
        _row(
            "GFLOP per denoising step (batch 1)",
            step_flops["latent"] / 1e9,
            step_flops["pixel"] / 1e9,
        ),
        _row(
            f"GFLOP per sample ({n} steps + decode)",
            (n * step_flops["latent"] + decode_flops) / 1e9,
            n * step_flops["pixel"] / 1e9,
        ),
        _row(
            f"train step s (batch {tb}, fwd+bwd+Adam)",
            median(train_times["latent"]),
            median(train_times["pixel"]),
            paired_ratio(train_times["pixel"], train_times["latent"]),
        ),
        _row(
            f"train step peak MiB (batch {tb})",
            train_peak["latent"] / MIB,
            train_peak["pixel"] / MIB,
        ),
        _row(
            f"sample s (batch {b}, {n} DDIM steps, latent incl. decode)",
            median(sample_times["latent"]),
            median(sample_times["pixel"]),
            paired_ratio(sample_times["pixel"], sample_times["latent"]),
        ),
        _row(
            f"sampling peak MiB (batch {b})",
            sample_peak["latent"] / MIB,
            sample_peak["pixel"] / MIB,
        ),
    ]
    return {
        "tables": {"latent versus pixel diffusion (ratio = pixel / latent)": rows},
        "configs": {
            "vae": to_dict(sizes.vae),
            "latent_unet": to_dict(sizes.latent_unet),
            "pixel_unet": to_dict(sizes.pixel_unet),
        },
        "settings": {
            "image_size": s,
            "train_batch": tb,
            "sample_batch": b,
            "sample_steps": n,
            "repeats": repeats,
            "warmup": warmup,
            "clock": clock,
        },
        "times_s": {"train": train_times, "sample": sample_times},
        "decode_gflop_per_sample": decode_flops / 1e9,
        "memory_method": _memory_method(device),
        "flop_method": "torch.utils.flop_counter.FlopCounterMode: matmul, conv, attention; 2 per MAC",
    }


def _row(metric: str, latent: float, pixel: float, ratio: float | None = None) -> dict:
    """ratio defaults to pixel / latent; timed rows pass the median of paired ratios instead."""
    return {
        "metric": metric,
        "latent": latent,
        "pixel": pixel,
        "pixel/latent": pixel / latent if ratio is None else ratio,
    }


def _numel(shape: tuple[int, ...]) -> int:
    return int(torch.tensor(shape).prod())


def _memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated minus memory allocated before the call"
    return (
        "peak bytes of tensor storage allocated by ATen ops during the call (weights and earlier "
        "optimizer state excluded; kernel scratch not visible): "
        "ldm_course.bench.measure.LiveTensorBytes"
    )
