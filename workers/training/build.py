"""The trainable pieces: the LoRA model, its optimizer and its learning-rate schedule."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import get_scheduler

from app.error_codes import JobError
from app.schemas.training import Scheduler, TrainingConfig
from workers.training.checkpoint import load_adapter_weights
from workers.training.errors import UnsupportedSetting

# The output projection is never adapted: it is tied to the input embeddings in most small
# models, and the selective loss (loss.py) computes its gradient only with respect to its input.
EXCLUDED_MODULES = ("lm_head",)


def lora_config(config: TrainingConfig) -> LoraConfig:
    targets: str | list[str]
    if config.target_modules is None:
        targets = "all-linear"  # peft's every nn.Linear except the output layer
    else:
        targets = [m for m in config.target_modules if m not in EXCLUDED_MODULES]
        if not targets:
            raise UnsupportedSetting(
                "`target_modules` names no module that LoRA can adapt", JobError.NO_TARGET_MODULES
            )
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        use_dora=config.use_dora,
        use_rslora=config.use_rslora,
        bias="none",
    )


def build_peft_model(model: Any, config: TrainingConfig) -> PeftModel:
    """Wrap the base model with fresh LoRA weights (seeded by the caller); base frozen."""
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input-embedding grad hook, unlike the old one.
        # transformers 5 renamed the switch (the old name warns); older releases only have it.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False
    return get_peft_model(model, lora_config(config))


def init_from_adapter(model: PeftModel, folder: Path) -> None:
    """Start the fresh LoRA layers from a saved adapter's weights ("continue from a version").

    Only the weights: the optimizer, schedule and data are the new run's (unlike a resume)."""
    if not load_adapter_weights(model, folder):
        raise UnsupportedSetting(
            f"the adapter in {folder} does not match this run's LoRA settings "
            "(`rank`, `target_modules`, `use_dora`)",
            JobError.PARENT_ADAPTER_MISMATCH,
            path=str(folder),
        )


def build_optimizer(params: list[torch.nn.Parameter], config: TrainingConfig) -> torch.optim.AdamW:
    # foreach: one fused kernel launch over all the (hundreds of small) LoRA tensors.
    return torch.optim.AdamW(
        params, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainingConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    warmup = math.ceil(config.warmup_ratio * total_steps)
    name = config.scheduler.value
    if config.scheduler is Scheduler.CONSTANT and warmup:
        name = "constant_with_warmup"  # plain "constant" would ignore the warmup
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def steps_per_epoch(batches_per_epoch: int, accumulation: int) -> int:
    return math.ceil(batches_per_epoch / accumulation)


def total_steps(config: TrainingConfig, per_epoch: int) -> int:
    """Optimizer steps for `epochs` (which may be fractional), at least 1."""
    return max(1, math.ceil(config.epochs * per_epoch))
