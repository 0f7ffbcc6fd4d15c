"""Choice of device and weight dtype for loading and inference, and freeing accelerator memory."""

import gc
import os

import torch

from workers.ml.errors import DeviceUnavailable

# Lets an operator pin a worker to a device (e.g. "cpu" on a shared GPU box) without code.
DEVICE_ENV = "TUNELAB_DEVICE"


def pick_device(override: str | torch.device | None = None) -> torch.device:
    """The override (or $TUNELAB_DEVICE) if given and present, else cuda when available, else cpu.

    "auto" means the same as no override. Raises DeviceUnavailable for a device that is absent.
    """
    requested = override if override is not None else os.environ.get(DEVICE_ENV, "auto")
    if isinstance(requested, str) and requested.strip().lower() in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise DeviceUnavailable(f"unknown device {requested!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable("a CUDA device was requested but none is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise DeviceUnavailable(f"{device} was requested but only {count} CUDA device(s) exist")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable("an MPS device was requested but none is available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceUnavailable(f"device type {device.type!r} is not supported")
    return device


def pick_dtype(device: torch.device | str) -> torch.dtype:
    """Dtype for model weights when loading/inferring on `device`.

    CUDA: bf16 where the GPU supports it (same range as fp32, no overflow), else fp16.
    CPU and MPS: fp32, because half-precision weights on CPU lose accuracy for small models and
    many CPU kernels are slower in it; bf16 autocast for training is a separate, later choice.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """'float32', 'bfloat16', ... for logs, JSON and the UI."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """Accept a torch.dtype or its name ('bf16', 'bfloat16', 'float16', 'fp32', ...)."""
    if isinstance(value, torch.dtype):
        return value
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}
    name = aliases.get(value.lower(), value.lower())
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unsupported dtype {value!r}")
    return dtype


def free_memory() -> None:
    """Release what a dropped model held: Python garbage first, then cached accelerator blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()
