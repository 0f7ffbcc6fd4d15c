"""What train() returns, and the measurements that go into it."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class TrainResult:
    status: str  # completed | stopped | cancelled
    steps: int  # optimizer steps done, earlier sessions included
    total_steps: int
    epochs: float  # epochs done (steps / steps per epoch)
    train_loss: float | None  # EMA-smoothed training loss (see loop.EMA_BETA)
    last_train_loss: float | None  # loss of the last step
    eval_loss: float | None  # last validation loss measured, None without a validation set
    best_step: int | None  # step of the lowest eval loss, None without a validation set
    best_eval_loss: float | None
    adapter_step: int | None  # whose weights adapter_path holds: best_step with keep_best
    early_stopped_at_step: int | None  # set when early stopping ended the run
    tokens_seen: int  # non-pad tokens trained on, earlier sessions included
    adapter_path: Path | None  # None when cancelled
    checkpoint_path: Path | None  # newest checkpoint on disk, if any
    elapsed_s: float
    peak_rss_bytes: int  # the process's peak resident memory (model loading included)
    peak_accelerator_bytes: int | None  # CUDA peak allocated, None on CPU
    versions: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # what reporter.start() got

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (paths as strings)."""
        out = asdict(self)
        for key in ("adapter_path", "checkpoint_path"):
            out[key] = None if out[key] is None else str(out[key])
        return out


def versions() -> dict[str, str]:
    import peft
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": sys.version.split()[0],
    }
