"""The best adapter by validation loss (keep_best) and early stopping, for train().

Every evaluation goes through `observe`, which keeps the lowest eval loss and its step in the
RunState and counts evaluations without improvement (early stopping's patience). With keep_best
the adapter of each new best is written to out_dir/best:

  best/adapter/   the LoRA weights in PEFT format
  best/state.json {"step": N, "eval_loss": x}

On disk rather than in memory: a stopped, cancelled or crashed run resumes from a checkpoint in
a new process, and the best weights seen before must survive that; a copy in memory would also
hold accelerator memory for the whole run. LoRA weights are small, so writing them at each
improvement costs little. Like a checkpoint, the folder is written aside and renamed into place.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from workers.disk import staged_dir
from workers.training.checkpoint import RunState

BEST_DIR = "best"


def observe(state: RunState, eval_loss: float | None, min_delta: float) -> bool:
    """Record one evaluation at state.step; True when it is the lowest eval loss so far.

    A new best is any strictly lower loss. Patience is reset only when the loss falls by more
    than `min_delta` below the previous best (transformers' EarlyStoppingCallback rule). A loss
    that is not a finite number is never a best and never an improvement."""
    if eval_loss is None:
        return False
    previous = state.best_eval_loss
    finite = math.isfinite(eval_loss)
    improved = finite and (previous is None or eval_loss < previous - min_delta)
    state.evals_without_improvement = 0 if improved else state.evals_without_improvement + 1
    is_best = finite and (previous is None or eval_loss < previous)
    if is_best:
        state.best_step, state.best_eval_loss = state.step, eval_loss
    return is_best


def patience_spent(state: RunState, patience: int) -> bool:
    return patience > 0 and state.evals_without_improvement >= patience


def save_best(out_dir: Path, model: Any, state: RunState) -> Path:
    """Write the model's adapter as the best one (the step and loss in state)."""
    final = out_dir / BEST_DIR
    with staged_dir(final) as tmp:
        model.save_pretrained(tmp / "adapter")
        marker = {"step": state.best_step, "eval_loss": state.best_eval_loss}
        (tmp / "state.json").write_text(json.dumps(marker), encoding="utf-8")
    return final / "adapter"


def best_adapter(out_dir: Path, state: RunState) -> Path | None:
    """out_dir/best/adapter when it holds the weights of state.best_step, else None.

    After a resume the folder may be from a step later than the checkpoint's (written before the
    run was interrupted, then trained again): it is not the state's best and is not used."""
    folder = out_dir / BEST_DIR
    try:
        marker = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if state.best_step is None or marker.get("step") != state.best_step:
        return None
    return folder / "adapter"
