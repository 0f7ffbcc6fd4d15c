"""Resumable checkpoints: out_dir/checkpoints/step-N with everything a run needs to continue
exactly where it was.

Layout of one checkpoint:
  adapter/          the LoRA weights in PEFT format (usable as an adapter on their own)
  optimizer.pt      AdamW state (moments for every trainable tensor)
  scheduler.pt      LR scheduler state
  rng.pt            Python, torch CPU and CUDA generator states (LoRA dropout draws from them)
  state.json        step, epoch, next window in the epoch's batch plan, counters, config

A checkpoint is written into a hidden temp folder and renamed into place (workers/disk.py), so a
crash never leaves a half-written step-N behind, and a full disk leaves nothing of it at all;
only the newest KEEP_LAST are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from app.error_codes import JobError
from workers.disk import staged_dir
from workers.training.errors import UnsupportedSetting

KEEP_LAST = 2
_PREFIX = "step-"


@dataclass
class RunState:
    """Counters saved with each checkpoint; `epoch`/`window` point at the next window to run."""

    step: int = 0
    epoch: int = 0
    window: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    loss_ema: float | None = None
    last_loss: float | None = None
    eval_loss: float | None = None
    # The lowest eval loss so far and its step (workers/training/best.py), and the evaluations
    # since eval loss last improved by more than early_stopping_min_delta. Saved with the
    # checkpoint so a resumed run keeps counting; older state.json files lack them (defaults).
    best_step: int | None = None
    best_eval_loss: float | None = None
    evals_without_improvement: int = 0
    config: dict[str, Any] = field(default_factory=dict)


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints under out_dir/checkpoints, oldest first."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX)]
    return sorted(
        (p for p in found if p.name[len(_PREFIX) :].isdigit()),
        key=lambda p: int(p.name[len(_PREFIX) :]),
    )


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(
    out_dir: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: RunState,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Write step-N; DiskFull (workers/disk.py) when the disk fills up, with nothing of it left
    behind and the earlier checkpoints intact, so the run can resume once space is freed."""
    root = out_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{state.step}"
    # The same step may be written again (e.g. "stop" right after a checkpoint): replaced.
    with staged_dir(final) as tmp:
        model.save_pretrained(tmp / "adapter")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
    for old in checkpoint_dirs(out_dir)[:-KEEP_LAST]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_adapter_weights(model: Any, folder: Path) -> bool:
    """Copy a saved PEFT adapter's weights (folder/adapter_model.safetensors) into the model's
    LoRA layers. False, with the model unchanged or partly loaded, when they do not fit: other
    shapes (rank), or layers one side has and the other lacks (target modules)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    device = next(p.device for p in model.parameters() if p.requires_grad)
    weights = load_file(str(folder / "adapter_model.safetensors"), device=str(device))
    try:
        result = set_peft_model_state_dict(model, weights)
    except RuntimeError:  # load_state_dict's "size mismatch"
        return False
    # missing_keys lists every frozen base weight too: only trainable (LoRA) ones count.
    missing = trainable.intersection(getattr(result, "missing_keys", ()))
    return not getattr(result, "unexpected_keys", None) and not missing


def load_checkpoint(
    path: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None = None,
) -> RunState:
    """Restore adapter weights, optimizer, scheduler and RNG states; returns the counters."""
    state_file = path / "state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{path} is not a training checkpoint (no state.json)")
    if not load_adapter_weights(model, path / "adapter"):
        raise UnsupportedSetting(
            f"checkpoint {path} does not match this LoRA configuration",
            JobError.CHECKPOINT_MISMATCH,
            path=str(path),
        )
    device = next(p.device for p in model.parameters() if p.requires_grad)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt"))
    if scaler is not None and (path / "scaler.pt").is_file():
        scaler.load_state_dict(torch.load(path / "scaler.pt"))
    rng = torch.load(path / "rng.pt", weights_only=False)  # Python's state is a plain tuple
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return RunState(**json.loads(state_file.read_text(encoding="utf-8")))
