"""Data parallelism with PyTorch's own engine (torchrun + DistributedDataParallel).

Launch with `torchrun --nproc_per_node=N -m ldm_course train-ldm ...`; a plain `python -m ldm_course`
is world size 1 and needs none of this. Each step draws the *global* batch of indices and noise from
generators that every rank seeds identically, then keeps its own shard `[rank::world_size]`, so N
processes compute exactly the gradient that one process computes on the whole global batch.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch: rows rank, rank + size, ... (B_global, ...) -> (B_global / size, ...)."""
        return x[self.rank :: self.size]


def setup_world(device: torch.device) -> World:
    """Joins the process group when launched by torchrun (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(device=device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank=rank, size=size, device=device)


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """DistributedDataParallel when world size > 1; the model itself otherwise."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(value: float, world: World) -> float:
    """The global-batch loss for logging (the mean of the equal-sized shards' means)."""
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return t.item() / world.size


def teardown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
