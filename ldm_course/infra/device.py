"""Choose the device once, in the notebook's first cell or the CLI: cuda, then mps, then cpu; and
refuse, with the fix, a named device this machine does not have."""

import torch


def get_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: torch.device | str, *, what: str | None = None) -> torch.device:
    """`device` as a torch.device if this machine has it, else a ValueError that says what to use.
    `what` names the setting in the message (e.g. "--device cuda"; default "device=...")."""
    what = what or f"device={str(device)!r}"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{what} is not a device; use auto, cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch has no CUDA support" if torch.version.cuda is None else "no GPU"
            raise ValueError(f"{what}: CUDA is not available here ({why}); use cpu or auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(
                f"{what}: this machine has {torch.cuda.device_count()} CUDA devices "
                "(cuda:0 ...); choose one of them"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{what}: Apple's MPS is not available here; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{what}: use auto, cpu, cuda, cuda:N or mps")
    return device
