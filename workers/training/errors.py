"""Typed errors of the training core; str(error) is a sentence fit to show a user."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from app.error_codes import JobError

# Messages PyTorch puts in a RuntimeError when an allocation fails: CUDA's caching allocator,
# the CPU allocator (when the kernel refuses memory rather than killing the process) and MPS.
_OOM_MARKERS = ("out of memory", "DefaultCPUAllocator", "can't allocate memory")


class TrainingError(Exception):
    """Base of the errors train() raises on purpose (bad data, not enough memory).

    `code` (an app.error_codes code) and `params` let pages say it in the reader's language;
    str(error) stays the English sentence for logs, the CLI and the API's `message`. Without
    a code it is reported as an internal error with that sentence as the detail."""

    code: str | None = None

    def __init__(self, message: str, code: str | None = None, **params: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.params = params


class EmptyDataset(TrainingError):
    """No training example is left after tokenizing and filtering; raised before training."""

    code = JobError.NO_TRAINABLE_ROWS  # or DATASET_EMPTY


class TrainingOOM(TrainingError):
    """The device ran out of memory; the message says what to change."""

    code = JobError.OOM


class UnsupportedSetting(TrainingError, ValueError):
    """A setting this device or install cannot run (a ValueError, as pydantic's are)."""


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MARKERS)


def oom_advice(batch_size: int, max_length: int, gradient_checkpointing: bool, device: str) -> str:
    tips = [
        f"lower `batch_size` (now {batch_size}; raise `gradient_accumulation` to keep the "
        "effective batch)",
        f"lower `max_length` (now {max_length})",
    ]
    if not gradient_checkpointing:
        tips.append("enable `gradient_checkpointing` (about 30% slower, far less memory)")
    if device.startswith("cuda"):
        tips.append("use `method`=qlora (4-bit base weights)")
    else:
        tips.append("train on a GPU with `method`=qlora (4-bit base weights)")
    return f"training ran out of memory on {device}; try: " + "; ".join(tips) + "."


@contextmanager
def out_of_memory_as_training_error(
    batch_size: int, max_length: int, gradient_checkpointing: bool, device: str
) -> Iterator[None]:
    """Re-raise any out-of-memory error inside the block as TrainingOOM with concrete advice."""
    try:
        yield
    except RuntimeError as exc:  # torch.OutOfMemoryError is a RuntimeError too
        if not is_out_of_memory(exc):
            raise
        advice = oom_advice(batch_size, max_length, gradient_checkpointing, device)
        raise TrainingOOM(
            advice,
            batch_size=batch_size,
            max_length=max_length,
            gradient_checkpointing=gradient_checkpointing,
            device=device,
        ) from exc
