"""One optimizer step over an accumulation window, evaluation, and the window schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from workers.training.data import Example, LengthGroupedBatches, collate
from workers.training.group import Group
from workers.training.memory import trim_heap
from workers.training.precision import PrecisionPlan

LossFn = Callable[[nn.Module, dict[str, torch.Tensor], torch.dtype], tuple[torch.Tensor, int]]


@dataclass(frozen=True)
class StepContext:
    """What every step and evaluation needs, built once by train()."""

    model: nn.Module  # the *ForCausalLM with LoRA layers
    loss_fn: LossFn
    pad_id: int
    device: torch.device
    plan: PrecisionPlan
    params: Sequence[torch.Tensor]  # the trainable (LoRA) parameters
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    max_grad_norm: float
    # Under torchrun (workers/training/group.py): this rank's place in the group, and the
    # DistributedDataParallel that runs model + loss so that backward all-reduces the gradients.
    # The window's batches are then the group's batches; each rank trains its shard of them.
    group: Group | None = None
    ddp: nn.Module | None = None


@dataclass(frozen=True)
class StepOutcome:
    loss: float  # mean cross-entropy per trainable token over the whole window
    grad_norm: float  # total L2 norm of the LoRA gradients before clipping
    lr: float  # learning rate this step used
    tokens: int  # non-pad tokens (context + trainable) processed


def iterate_windows(
    sampler: LengthGroupedBatches, accumulation: int, epoch: int, window: int
) -> Iterator[tuple[int, int, int, list[list[int]]]]:
    """(epoch, window index, windows in that epoch, batches) forever, from a saved position.

    A window is `accumulation` consecutive batches of the epoch's plan (the last may be short):
    one optimizer step.
    """
    while True:
        plan = sampler.epoch(epoch)
        windows = [plan[i : i + accumulation] for i in range(0, len(plan), accumulation)]
        for index in range(window, len(windows)):
            yield epoch, index, len(windows), windows[index]
        epoch, window = epoch + 1, 0


def autocast(device: torch.device, plan: PrecisionPlan) -> AbstractContextManager[None]:
    enabled = plan.autocast_dtype is not None
    return torch.autocast(device.type, dtype=plan.autocast_dtype, enabled=enabled)


def _batch(
    examples: Sequence[Example], indices: Sequence[int], pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    batch = collate([examples[i] for i in indices], pad_id)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def run_window(
    ctx: StepContext, examples: Sequence[Example], window: Sequence[Sequence[int]]
) -> StepOutcome:
    """Forward/backward every batch of the window, then one clipped optimizer step."""
    # Each micro-batch's summed loss is divided by the trainable tokens of the WHOLE window, so
    # the accumulated gradient is that of the mean over every trainable token in the window:
    # exactly what one big batch would give. Averaging per micro-batch instead would weight a
    # token in a short batch more than one in a long batch.
    window_targets = sum(examples[i].n_targets for batch in window for i in batch)
    tokens = sum(len(examples[i]) for batch in window for i in batch)
    lr = float(ctx.scheduler.get_last_lr()[0])
    scaler, optimizer, group, ddp = ctx.scaler, ctx.optimizer, ctx.group, ctx.ddp
    total = 0.0
    for n, indices in enumerate(window):
        weight = 1.0
        if group is not None:
            indices, weight = group.shard(indices)
        batch = _batch(examples, indices, ctx.pad_id, ctx.device)
        # DDP all-reduces the gradients in the backward of the window's last batch only.
        sync = ddp.no_sync() if ddp is not None and n + 1 < len(window) else nullcontext()
        with sync:
            with autocast(ctx.device, ctx.plan):
                if ddp is not None:
                    loss_sum, _ = ddp(batch)
                else:
                    loss_sum, _ = ctx.loss_fn(ctx.model, batch, ctx.plan.compute_dtype)
            loss = loss_sum / window_targets
            total += float(loss.detach()) * weight
            if group is not None:  # DDP averages over the ranks; the window's mean is a sum
                loss = loss * (weight * group.world)
            (scaler.scale(loss) if scaler is not None else loss).backward()
    if group is not None:
        (total,) = group.sum(total)  # each rank's share of the window's mean loss
    if scaler is not None:
        scaler.unscale_(optimizer)
    # max_grad_norm 0 means no clipping; the norm is still measured for the metrics.
    limit = ctx.max_grad_norm if ctx.max_grad_norm > 0 else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(ctx.params, limit))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    ctx.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if ctx.device.type == "cpu":
        trim_heap()
    return StepOutcome(loss=total, grad_norm=grad_norm, lr=lr, tokens=tokens)


@torch.no_grad()
def evaluate(
    ctx: StepContext, examples: Sequence[Example], batches: Sequence[Sequence[int]]
) -> float | None:
    """Mean loss per trainable token over the validation set (the training loss's definition)."""
    if not batches:
        return None
    model = ctx.model
    model.eval()  # no LoRA dropout
    total, count = 0.0, 0
    if ctx.group is not None:  # each rank evaluates every N-th batch; the sums are added below
        batches = batches[ctx.group.rank :: ctx.group.world]
    try:
        for indices in batches:
            batch = _batch(examples, indices, ctx.pad_id, ctx.device)
            with autocast(ctx.device, ctx.plan):
                loss_sum, n = ctx.loss_fn(model, batch, ctx.plan.compute_dtype)
            total, count = total + float(loss_sum), count + n
    finally:
        model.train()
    if ctx.group is not None:
        total, count = ctx.group.sum(total, count)
    return total / count if count else None
