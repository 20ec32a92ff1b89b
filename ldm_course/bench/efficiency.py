"""Benchmark 3: how much of the machine a U-Net training step uses. Achieved GFLOP/s of one step
(FLOPs of forward + backward from FlopCounterMode, divided by the measured time of forward +
backward + Adam) as a fraction of what one large fp32 matmul achieves in the same run, on the same
threads. The matmul is close to the best this machine does; small convolutions, GroupNorm,
attention on 4x4 grids and Python overhead are what the step loses to it.
"""

from dataclasses import dataclass, field

import torch

from ldm_course.bench.measure import Clock, count_flops, interleaved_times, median, training_step
from ldm_course.config import UNetConfig, to_dict
from ldm_course.unet import UNet


@dataclass(frozen=True)
class EfficiencySizes:
    unet: UNetConfig = field(default_factory=UNetConfig)
    latent_shape: tuple[int, int, int] = (4, 8, 8)  # (C_z, h, w) of the default VAE at 64x64
    batch: int = 16
    matmul_size: int = 2048  # n of an (n, n) @ (n, n) fp32 product: 2 n^3 FLOPs


TINY_EFFICIENCY = EfficiencySizes(
    unet=UNetConfig(base_channels=16, channel_mult=(1, 2), attention_levels=(1,)),
    latent_shape=(4, 4, 4),
    batch=2,
    matmul_size=128,
)


def compute_efficiency(
    sizes: EfficiencySizes,
    *,
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    seed: int = 0,
    clock: Clock = "wall",
) -> dict:
    """GFLOP/s of a training step and of a large matmul, and their ratio."""
    gen = torch.Generator().manual_seed(seed)
    unet = UNet(sizes.unet).to(device)
    x = torch.randn((sizes.batch, *sizes.latent_shape), generator=gen).to(device)  # (B, C, h, w)
    t = torch.randint(0, 1000, (sizes.batch,), generator=gen).to(device)  # (B,)
    n = sizes.matmul_size
    a = torch.randn((n, n), generator=gen).to(device)  # (n, n)
    b = torch.randn((n, n), generator=gen).to(device)  # (n, n)
    c = torch.empty((n, n), device=device)  # (n, n), reused: no allocation in the timed call

    step = training_step(unet, lambda: unet(x, t))
    step()  # Adam's state exists before counting, so the count is of a steady-state step
    step_flops = count_flops(step)
    matmul_flops = 2 * n**3
    times = interleaved_times(
        {"train step": step, "matmul": lambda: torch.mm(a, b, out=c)},
        repeats=repeats,
        warmup=warmup,
        device=device,
        clock=clock,
    )
    step_rate = step_flops / median(times["train step"]) / 1e9
    matmul_rate = matmul_flops / median(times["matmul"]) / 1e9
    rows = [
        {
            "what": f"U-Net train step (batch {sizes.batch})",
            "GFLOP": step_flops / 1e9,
            "median_s": median(times["train step"]),
            "GFLOP/s": step_rate,
        },
        {
            "what": f"matmul {n}x{n} fp32",
            "GFLOP": matmul_flops / 1e9,
            "median_s": median(times["matmul"]),
            "GFLOP/s": matmul_rate,
        },
        {
            "what": "fraction of matmul rate",
            "GFLOP": None,
            "median_s": None,
            "GFLOP/s": step_rate / matmul_rate,
        },
    ]
    return {
        "tables": {"compute efficiency": rows},
        "fraction_of_matmul": step_rate / matmul_rate,
        "configs": {"unet": to_dict(sizes.unet)},
        "settings": {
            "batch": sizes.batch,
            "latent_shape": list(sizes.latent_shape),
            "matmul_size": n,
            "repeats": repeats,
            "warmup": warmup,
            "clock": clock,
        },
        "times_s": times,
        "flop_method": "FlopCounterMode over forward + backward (Adam's update counts 0); time "
        "includes the Adam step",
    }
