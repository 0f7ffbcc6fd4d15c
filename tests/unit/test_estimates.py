"""The time estimate: exact over-length counts, the measured worker's throughput, the fallback.

Pure: datasets are unsaved rows carrying the statistics the analyze task stores, and workers are
heartbeat payloads as app.services.health.alive_workers returns them. A real worker publishing
its probe is tested in tests/workers/test_estimates_worker.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.models import Dataset
from app.schemas.training import TrainingConfig
from app.services import estimates

# 10 rows: lengths 100 (x4), 300 (x3), 600 (x2), 1000 (x1).
COUNTS = [[100, 4], [300, 3], [600, 2], [1000, 1]]


def dataset(counts: list[list[int]] | None = COUNTS) -> Dataset:
    stats: dict[str, Any] = {"tokens": {"mean": 370.0}}
    if counts is not None:
        stats["length_counts"] = counts
    return Dataset(row_count=10, stats_status="ready", stats=stats)


def worker(name: str, gflops: float, device: str = "cpu") -> dict[str, Any]:
    return {
        "hostname": name,
        "queues": ["train"],
        "accelerator": device,
        "throughput": {"probe": estimates.PROBE_NAME, "gflops": gflops, "device": device},
    }


CONFIG = TrainingConfig(
    max_length=512, val_percent=0, epochs=1, batch_size=2, gradient_checkpointing=False
)


@pytest.mark.parametrize(("max_length", "over"), [(99, 10), (100, 6), (512, 3), (1000, 0)])
def test_over_length_is_exact_for_any_max_length(max_length: int, over: int) -> None:
    assert estimates.over_length(dataset(), max_length) == over


def test_over_length_is_unknown_without_counts() -> None:
    assert estimates.over_length(dataset(None), 512) is None
    assert estimates.over_length(Dataset(row_count=3, stats_status="pending"), 512) is None


def test_truncate_counts_cut_rows_and_drop_leaves_them_out() -> None:
    truncated = estimates.estimate(CONFIG, dataset(), None, [worker("w", 50.0)])
    assert truncated.tokens == 4 * 100 + 3 * 300 + 3 * 512 and truncated.train_rows == 10
    drop = TrainingConfig.model_validate({**CONFIG.model_dump(), "overlength": "drop"})
    dropped = estimates.estimate(drop, dataset(), None, [worker("w", 50.0)])
    assert dropped.tokens == 4 * 100 + 3 * 300 and dropped.train_rows == 7
    assert dropped.over_length == truncated.over_length == 3


def test_time_is_the_tokens_over_the_measured_workers_throughput() -> None:
    params = 2 * estimates.REFERENCE_PARAMS
    first = estimates.estimate(CONFIG, dataset(), params, [worker("train-a@host", 40.0)])
    assert first.worker == "train-a@host" and first.gflops == 40.0 and not first.rough
    speed = estimates.tokens_per_second(40.0, params, checkpointing=False)
    # One evaluation at the end of the epoch; val_percent 0 means no validation tokens.
    assert first.seconds == pytest.approx(first.tokens / speed, abs=0.05)
    # Double the published figure: half the time.
    second = estimates.estimate(CONFIG, dataset(), params, [worker("train-a@host", 80.0)])
    assert second.seconds == pytest.approx(first.seconds / 2, abs=0.1)
    # Gradient checkpointing costs its recompute.
    slow = estimates.estimate(
        CONFIG.model_copy(update={"gradient_checkpointing": True}), dataset(), params,
        [worker("train-a@host", 40.0)],
    )  # fmt: skip
    assert slow.seconds == pytest.approx(first.seconds * estimates.CHECKPOINTING_COST, abs=0.1)


def test_validation_passes_add_their_forward_cost() -> None:
    config = CONFIG.model_copy(update={"val_percent": 20, "epochs": 2})
    found = estimates.estimate(config, dataset(), None, [worker("w", 40.0)])
    pass_tokens = 4 * 100 + 3 * 300 + 3 * 512
    speed = estimates.tokens_per_second(40.0, estimates.REFERENCE_PARAMS, False)
    assert found.tokens == int(pass_tokens * 0.8 * 2)
    expected = (found.tokens + estimates.EVAL_COST * pass_tokens * 0.2 * 2) / speed  # 2 evals
    assert found.seconds == pytest.approx(expected, abs=0.05)


def test_the_worker_on_the_jobs_device_is_used_and_named() -> None:
    workers = [worker("train-cpu@a", 30.0), worker("train-gpu@b", 9000.0, "cuda")]
    found = estimates.estimate(CONFIG, dataset(), None, workers)
    assert (found.device, found.worker, found.gflops) == ("cuda", "train-gpu@b", 9000.0)
    cpu_only = estimates.estimate(CONFIG, dataset(), None, workers[:1])
    assert (cpu_only.device, cpu_only.worker) == ("cpu", "train-cpu@a")


def test_without_a_measurement_the_rough_constants_apply() -> None:
    unmeasured = {"hostname": "w", "queues": ["train"], "accelerator": "cpu"}
    other_probe = worker("old", 40.0)
    other_probe["throughput"]["probe"] = "an-older-probe"
    for workers in ([], [unmeasured], [other_probe]):
        found = estimates.estimate(CONFIG, dataset(), None, workers)
        assert found.rough and found.worker is None
        assert found.tokens_per_s == estimates.TOKENS_PER_S["cpu"]
        assert found.seconds == pytest.approx(found.tokens / estimates.TOKENS_PER_S["cpu"], 0.01)
    record = found.as_record()
    assert record["rough"] is True and record["seconds"] == found.seconds
