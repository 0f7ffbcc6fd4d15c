"""Which GPUs the training workers get: one worker per GPU, each seeing only its own.

`tunelab up` runs in the web's environment, which never imports torch, so GPUs are counted
from the NVIDIA driver's /proc entries (one folder per GPU) instead of torch.cuda.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def visible_gpu_ids(env: Mapping[str, str] = os.environ) -> list[str]:
    """Ids of the NVIDIA GPUs a process with `env` may use: CUDA_VISIBLE_DEVICES when set, else
    all."""
    mask = env.get("CUDA_VISIBLE_DEVICES")
    if mask is not None:
        ids = [i.strip() for i in mask.split(",") if i.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU.
        return [] if not ids or ids[0].startswith("-") else ids
    try:
        count = sum(1 for entry in NVIDIA_PROC.iterdir() if entry.is_dir())
    except OSError:  # no NVIDIA driver
        count = 0
    return [str(i) for i in range(count)]


def train_worker_devices(setting: str) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each training worker (TUNELAB_WORKER_GPUS).

    None leaves the environment as it is (one worker: the CPU, or the only GPU); "" hides
    every GPU, so that worker trains on the CPU.
    """
    if setting == "all":
        return [None]  # one worker that sees every GPU: runs of several processes fit it
    if setting == "auto":
        ids = visible_gpu_ids()
        return [None] if len(ids) <= 1 else ids
    count = int(setting)
    return [str(i) for i in range(count)] if count > 0 else [""]


def training_slots(cpu_processes: int) -> tuple[str, int]:
    """(device, processes one run may use) for a training worker: its visible GPUs, or on a
    machine without them `cpu_processes` (TUNELAB_TRAIN_PROCESSES)."""
    ids = visible_gpu_ids()
    return ("cuda", len(ids)) if ids else ("cpu", max(1, cpu_processes))
