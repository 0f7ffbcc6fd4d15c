"""Pieces both serving benchmarks use: a first-token clock for generate() and a random LoRA."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch


class FirstTokenClock:
    """A generate() streamer that notes when the first new token arrives (same run, no extra)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:  # the first call carries the prompt
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def random_adapter(model: Any, folder: Path, seed: int = 0) -> Path:
    """A LoRA (r=8, every linear layer) with small random B: it really changes the output, and
    answers stay readable. The model itself is left untouched (a copy is adapted)."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    peft_model.save_pretrained(folder)
    return folder
