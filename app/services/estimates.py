"""Rough time and memory estimates shown before a run starts (labelled as rough in the UI).

Time: trainable tokens ÷ a throughput that scales inversely with model size, calibrated on
SmolLM2-135M with Tunelab's trainer on a 2-core CPU and on one mid-range GPU. Memory: weights
at the precision used plus activations that grow with batch × length × model size; the
calibration constants are the measured peaks of the same runs. Real figures appear live.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models import Dataset
from app.schemas.training import Method, TrainingConfig
from app.services.jobs import estimate_steps

REFERENCE_PARAMS = 134_515_008
# Non-pad tokens per second for the reference model (CPU: bench/bench_train.py on this repo's
# 2-core reference machine; GPU: an order of magnitude estimate for one consumer card).
TOKENS_PER_S = {"cpu": 250.0, "cuda": 6000.0}
# Peak memory, fitted to SmolLM2-135M at batch 4 x 512 on the 2-core reference machine (peak
# RSS of workers.training.cli on the Zhangjiajie demo set): 4.2 GiB without gradient
# checkpointing, 2.0 GiB with it. Activation bytes per (token x million parameters), the
# share checkpointing keeps, and what a training process holds before any model (torch,
# transformers, tokenizer, data).
ACTIVATION_BYTES = 12_500
CHECKPOINTED_SHARE = 0.3
PROCESS_BYTES = 800 * 1024**2


@dataclass
class Estimate:
    steps: int
    train_rows: int
    tokens: int | None
    seconds: float | None
    memory_bytes: int
    device: str


def estimate(
    config: TrainingConfig, dataset: Dataset, parameter_count: int | None, device: str
) -> Estimate:
    params = parameter_count or REFERENCE_PARAMS
    train_rows = max(1, dataset.row_count * (100 - config.val_percent) // 100)
    tokens = seconds = None
    if dataset.stats_status == "ready" and dataset.stats:
        mean = float(dataset.stats["tokens"]["mean"])
        tokens = int(min(mean, config.max_length) * train_rows * config.epochs)
        speed = TOKENS_PER_S.get(device, TOKENS_PER_S["cpu"]) * REFERENCE_PARAMS / params
        seconds = tokens / speed
    bytes_per_weight = 0.6 if config.method is Method.QLORA else (2 if device == "cuda" else 4)
    activations = config.batch_size * config.max_length * (params / 1e6) * ACTIVATION_BYTES
    if config.gradient_checkpointing:
        activations *= CHECKPOINTED_SHARE
    return Estimate(
        steps=estimate_steps(config, dataset.row_count),
        train_rows=train_rows,
        tokens=tokens,
        seconds=seconds,
        memory_bytes=int(params * bytes_per_weight + activations + PROCESS_BYTES),
        device=device,
    )
