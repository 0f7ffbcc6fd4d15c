"""Time and memory estimates: shown live on the new-run form, stored on the job at creation.

Time = the tokens the run will compute ÷ the throughput of the training worker that will run it.
Each training worker times a short probe at start (workers/training/probe.py: one transformer
block's projections, forward and backward, on its device in its training dtype) and publishes
GFLOP/s with its heartbeat. One calibration constant turns that into non-pad training tokens/s
of the reference model; parameter count and gradient checkpointing scale it to the chosen run.
Without a measured training worker the estimate falls back to rough constants and says so.

Memory: weights at the precision used plus activations that grow with batch × length × model
size; the constants are the measured peaks of real runs. Real figures appear live.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Dataset, Project, User
from app.queue import Queue
from app.schemas.training import Method, Overlength, TrainingConfig
from app.services import model_choices
from app.services.health import alive_workers

logger = logging.getLogger(__name__)

REFERENCE_PARAMS = 134_515_008  # SmolLM2-135M, the model the probe's shapes come from
# Must match workers/training/probe.PROBE_NAME (the web never imports workers; a test checks):
# a figure from another probe is in another unit and is not used.
PROBE_NAME = "block-matmul-v1"
# Non-pad training tokens/s of the reference model per GFLOP/s of the figure a worker publishes.
# Measured with bench/bench_estimate.py on the 2-core AVX2 machine (fp32): the quick preset on
# the Zhangjiajie demo set (SmolLM2-135M, batch 4, max length 512, no gradient checkpointing,
# 51 steps), with a probe pass between every two steps. Derivation, from the quiet run:
# - training tokens over the steps' seconds × the probe of that moment: 0.811 tokens/s per
#   GFLOP/s (0.80 and 0.83 in two other runs, one of them on a machine loaded 4-12 deep: the
#   product cancels what other processes take from both);
# - the typical probe during those steps was 124 GFLOP/s, while a worker publishes the best of
#   three measurements (workers/heartbeat.py), 140 GFLOP/s in that run;
# so 0.811 × 124 / 140 = 0.72. That run: 100 tokens/s, 14.7 min; the estimate with 0.72 and the
# published 140 GFLOP/s: 14.6 min. Figures and the command: docs/benchmarks.md.
# Not calibrated on a GPU (none was available): CUDA workers use the same constant, likely
# optimistic there, since a small model's GPU steps wait on kernel launches more than matmuls.
TOKENS_PER_S_PER_GFLOPS = 0.72
# Gradient checkpointing recomputes each layer's forward in backward: the ratio of tokens/s
# per probe GFLOP/s without and with it over the same 15 batches, 0.794 / 0.610 = 1.30
# (docs/benchmarks.md).
CHECKPOINTING_COST = 1.3
# A validation token costs a forward only, a training token forward and backward: the probe-
# normalised cost of the end-of-run evaluation per token, 0.28 and 0.31 in two quiet runs.
EVAL_COST = 0.3
# Rough fallback (no training worker has published a measurement): tokens/s of the reference
# model, CPU as measured above (100 tokens/s on the idle 2-core AVX2 machine), GPU an order of
# magnitude for one consumer card.
TOKENS_PER_S = {"cpu": 100.0, "cuda": 6000.0}
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
    tokens: int | None  # training tokens (non-pad, after truncation or dropping), all epochs
    seconds: float | None
    memory_bytes: int
    device: str
    tokens_per_s: float | None = None  # the throughput the time assumes
    worker: str | None = None  # whose measurement it is; None: the rough constants
    gflops: float | None = None  # that worker's probe figure
    over_length: int | None = None  # dataset rows longer than max_length; None: unknown
    rows: int = 0  # dataset rows
    max_length: int = 0

    @property
    def rough(self) -> bool:
        return self.worker is None

    def as_record(self) -> dict[str, Any]:
        """What the job keeps (training_jobs.estimate), to set against the actual run."""
        keep = ("seconds", "tokens", "tokens_per_s", "worker", "gflops", "device", "steps")
        return {k: v for k, v in asdict(self).items() if k in keep} | {"rough": self.rough}


def estimate_steps(config: TrainingConfig, rows: int) -> int:
    """Optimizer steps the run will take (the worker reports the exact figure when it starts)."""
    train_rows = max(1, math.floor(rows * (100 - config.val_percent) / 100))
    per_epoch = max(
        1, math.ceil(math.ceil(train_rows / config.batch_size) / config.gradient_accumulation)
    )
    return max(1, math.ceil(per_epoch * config.epochs))


def train_workers() -> list[dict[str, Any]]:
    """Heartbeats of the alive workers that serve the training queue ([] when Redis is down)."""
    try:
        workers = alive_workers()
    except Exception:  # the form must still render without Redis
        logger.debug("could not read worker heartbeats", exc_info=True)
        return []
    return [w for w in workers if Queue.TRAIN.value in w.get("queues", [])]


def train_device(workers: list[dict[str, Any]]) -> str:
    """The device jobs run on: "cuda" when a training worker has a GPU, else "cpu"."""
    return "cuda" if any(w.get("accelerator") == "cuda" for w in workers) else "cpu"


def pick_worker(workers: list[dict[str, Any]], device: str) -> dict[str, Any] | None:
    """The measured training worker on `device`; the fastest when several are (an idle fast
    worker takes the next job first)."""
    measured = [
        w
        for w in workers
        if (t := w.get("throughput"))
        and t.get("probe") == PROBE_NAME
        and t.get("device") == device
        and float(t.get("gflops") or 0) > 0
    ]
    return max(measured, key=lambda w: float(w["throughput"]["gflops"]), default=None)


def tokens_per_second(gflops: float, parameter_count: int, checkpointing: bool) -> float:
    """Training tokens/s for a model of `parameter_count` on a worker whose probe gave `gflops`."""
    return _scaled(TOKENS_PER_S_PER_GFLOPS * gflops, parameter_count, checkpointing)


def _scaled(reference_rate: float, parameter_count: int, checkpointing: bool) -> float:
    """From the reference model's tokens/s: compute per token grows with the parameter count
    (LoRA's rank adds too little to count), and checkpointing recomputes the forward."""
    rate = reference_rate * REFERENCE_PARAMS / parameter_count
    return rate / CHECKPOINTING_COST if checkpointing else rate


def over_length(dataset: Dataset, max_length: int) -> int | None:
    """Rows longer than `max_length` tokens, exactly, from the dataset's length counts; None
    when the statistics are not ready or predate the counts."""
    counts = _length_counts(dataset)
    return None if counts is None else sum(n for length, n in counts if length > max_length)


def _length_counts(dataset: Dataset | None) -> list[list[int]] | None:
    if dataset is None or dataset.stats_status != "ready" or not dataset.stats:
        return None
    counts = dataset.stats.get("length_counts")
    return counts if isinstance(counts, list) else None


def _pass_tokens(dataset: Dataset, config: TrainingConfig) -> float | None:
    """Tokens one pass over the whole dataset computes, after truncation or dropping."""
    counts = _length_counts(dataset)
    limit = config.max_length
    if counts is not None:
        drop = config.overlength == Overlength.DROP
        return sum(min(length, limit) * n for length, n in counts if not drop or length <= limit)
    if dataset.stats_status == "ready" and dataset.stats:  # statistics from before the counts
        return min(float(dataset.stats["tokens"]["mean"]), limit) * dataset.row_count
    return None


def _evaluations(config: TrainingConfig, steps: int) -> int:
    """How many times train() evaluates: every eval_every_steps (or each epoch) and at the end."""
    every = config.eval_every_steps
    if not every:
        return math.ceil(config.epochs)
    return steps // every + (1 if steps % every else 0)


def estimate(
    config: TrainingConfig,
    dataset: Dataset,
    parameter_count: int | None,
    workers: list[dict[str, Any]],
    val_dataset: Dataset | None = None,
) -> Estimate:
    """`workers`: the alive training workers' heartbeats (train_workers())."""
    params = parameter_count or REFERENCE_PARAMS
    device = train_device(workers)
    over = over_length(dataset, config.max_length)
    dropped = (over or 0) if config.overlength == Overlength.DROP else 0
    kept = dataset.row_count - dropped
    train_share = (100 - config.val_percent) / 100
    train_rows = max(1, math.floor(kept * train_share))
    steps = estimate_steps(config, kept)
    result = Estimate(steps, train_rows, None, None, 0, device, over_length=over)
    result.rows, result.max_length = dataset.row_count, config.max_length
    worker = pick_worker(workers, device)
    checkpointing = config.gradient_checkpointing
    if worker is not None:
        result.worker = str(worker.get("hostname"))
        result.gflops = float(worker["throughput"]["gflops"])
        speed = tokens_per_second(result.gflops, params, checkpointing)
    else:
        speed = _scaled(TOKENS_PER_S.get(device, TOKENS_PER_S["cpu"]), params, checkpointing)
    result.tokens_per_s = round(speed, 1)
    tokens = _pass_tokens(dataset, config)
    if tokens is not None:
        result.tokens = int(tokens * train_share * config.epochs)
        held_out = _pass_tokens(val_dataset, config) if val_dataset is not None else None
        val_tokens = held_out if held_out is not None else tokens * (1 - train_share)
        evaluated = val_tokens * _evaluations(config, steps)
        result.seconds = round((result.tokens + EVAL_COST * evaluated) / speed, 3)
    bytes_per_weight = 0.6 if config.method is Method.QLORA else (2 if device == "cuda" else 4)
    activations = config.batch_size * config.max_length * (params / 1e6) * ACTIVATION_BYTES
    if config.gradient_checkpointing:
        activations *= CHECKPOINTED_SHARE
    result.memory_bytes = int(params * bytes_per_weight + activations + PROCESS_BYTES)
    return result


def for_job(
    session: Session,
    project: Project,
    config: TrainingConfig,
    dataset: Dataset,
    val_dataset: Dataset | None = None,
) -> dict[str, Any] | None:
    """The estimate a new job keeps (None when it cannot be made: it never blocks a job)."""
    try:
        owner = session.get(User, project.owner_id)
        choice = (
            model_choices.find_choice(session, owner, project.base_model, get_settings().data_dir)
            if owner is not None
            else None
        )
        params = choice.parameter_count if choice else None
        found = estimate(config, dataset, params, train_workers(), val_dataset)
    except Exception:
        logger.warning("could not estimate job time for project %s", project.id, exc_info=True)
        return None
    return found.as_record() if found.seconds is not None else None
