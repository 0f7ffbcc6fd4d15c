"""Loop thread count: the tuner switches only on clearly faster steps; settings are restored."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.inference.helpers import greedy
from workers.inference import InferenceEngine, Scheduler
from workers.inference.threads import ThreadTuner, usable_cpus


def _run(tuner: ThreadTuner, seconds: dict[int, float], steps: int, rows: int = 1) -> None:
    for _ in range(steps):
        threads = tuner.threads_for_next_step()
        tuner.record(threads, rows, seconds[threads])


def test_switches_to_one_thread_when_that_is_faster() -> None:
    tuner = ThreadTuner(2, every=16, window=4)
    _run(tuner, {2: 0.030, 1: 0.020}, 16)
    assert tuner.current == 2  # no probe yet
    _run(tuner, {2: 0.030, 1: 0.020}, 4)
    assert tuner.current == 1 and tuner.switches == 1
    _run(tuner, {2: 0.015, 1: 0.020}, 20)  # the machine got quiet again
    assert tuner.current == 2 and tuner.switches == 2


def test_keeps_the_count_when_the_other_is_not_clearly_faster() -> None:
    tuner = ThreadTuner(2, every=8, window=4)
    _run(tuner, {2: 0.020, 1: 0.019}, 100)
    assert tuner.current == 2 and tuner.switches == 0


def test_ignores_probes_on_another_batch_size() -> None:
    tuner = ThreadTuner(2, every=8, window=4)
    _run(tuner, {2: 0.030, 1: 0.001}, 8, rows=1)
    _run(tuner, {2: 0.030, 1: 0.001}, 4, rows=8)  # faster, but not comparable
    assert tuner.current == 2


def test_single_core_never_probes() -> None:
    tuner = ThreadTuner(1, every=2, window=2)
    _run(tuner, {1: 0.01}, 50)
    assert tuner.current == 1 and tuner.switches == 0


def _fresh_thread_count() -> int:
    import threading

    import torch

    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


@pytest.mark.parametrize("setting", [None, 1, "auto"])
def test_loop_threads_restore_the_count_when_the_loop_stops(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, setting: int | str | None
) -> None:
    before = _fresh_thread_count()
    with Scheduler(make_engine(), threads=setting) as scheduler:  # type: ignore[arg-type]
        scheduler.submit(greedy(base_dir, None, "hi", max_new_tokens=3)).result(timeout=60)
        expected = {None: before, 1: 1, "auto": usable_cpus()}[setting]
        assert scheduler.stats.threads == expected
    assert _fresh_thread_count() == before
