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


def load_script(path: str):
    """Import a script that lives outside the package (scripts/...) as a module, by its path
    from the repository root, so its functions can be tested without putting scripts/ on sys.path."""
    import importlib.util
    from pathlib import Path

    file = Path(__file__).resolve().parents[1] / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
