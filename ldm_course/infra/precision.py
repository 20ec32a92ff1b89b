"""The training precision, chosen once per run from the device (or the `precision` setting).

    fp32   CPU and MPS, and whenever asked for: the shipped models were trained this way
    bf16   autocast to bfloat16 on CUDA GPUs that compute it natively (compute capability >= 8:
           A100, L4, RTX 30xx and later); bf16 has fp32's exponent range, so no loss scaling
    fp16   autocast to float16 with a gradient scaler on older CUDA GPUs (T4 7.5, V100 7.0):
           fp16 gradients underflow, so the loss is multiplied by a scale before backward and the
           gradients divided by it before the optimizer step (Micikevicius et al. 2018, sec. 3.2)

torch.cuda.is_bf16_supported() is not the test: it also counts emulated bf16 (True on a T4).
"""

from typing import Literal, get_args

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """bf16 tensor cores exist from compute capability 8.0 (Ampere) on."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def choose_precision(device: torch.device | str, requested: str = "auto") -> str:
    """The precision a run uses on `device`: `requested`, or for "auto" the one that fits the card.
    An explicit bf16 on a GPU without native bf16, or mixed precision on MPS, is refused."""
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if native_bf16(device) else "fp16"
    if requested == "bf16" and device.type == "cuda" and not native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise ValueError(
            f"precision=bf16 needs compute capability >= 8 (this GPU has {major}.{minor} and would "
            "only emulate it); use --set precision=fp16 (or auto) on it"
        )
    if requested != "fp32" and device.type == "mps":
        raise ValueError(f"precision={requested} is not supported on MPS; use precision=fp32")
    return requested


def describe(precision: str, device: torch.device | str) -> str:
    """One line for the log, e.g. 'precision: fp16 autocast + gradient scaler (cuda, Tesla T4 7.5)'."""
    device = torch.device(device)
    where = device.type
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        where = f"cuda, {torch.cuda.get_device_name(device)} {major}.{minor}"
    what = {
        "fp32": "fp32",
        "bf16": "bf16 autocast",
        "fp16": "fp16 autocast + gradient scaler",
    }[precision]
    return f"precision: {what} ({where})"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The forward pass's context: autocast to bf16/fp16, or off for fp32."""
    return torch.autocast(
        device.type, dtype=DTYPES.get(precision, torch.bfloat16), enabled=precision != "fp32"
    )


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 (disabled, its calls pass the loss through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
