"""Small helpers shared by several test files."""

import torch


def optimise(params, loss_fn, *, steps: int, lr: float) -> list[float]:
    """Adam on loss_fn(step) for `steps` steps; the losses (tests check they fall and repeat)."""
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for step in range(steps):
        loss = loss_fn(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
