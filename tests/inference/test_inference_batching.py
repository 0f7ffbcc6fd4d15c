"""Continuous batching: mixed adapters in one forward pass, cancellation, isolated errors."""

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.inference.helpers import chat, greedy
from workers.inference import (
    DoneEvent,
    GenerationRequest,
    InferenceEngine,
    PromptTooLong,
    Scheduler,
    TokenEvent,
    UnknownAdapter,
)
from workers.ml.errors import ChatFormatError

# Different prompt lengths, so rows sit at different positions of the shared batch.
JOBS = [
    ("a", "Tell me about Paris and its museums."),
    ("b", "北京是中国的首都。"),
    (None, "Hello! How can I help you today? Please answer briefly, in one line."),
    ("a", "def add(a, b): return a + b"),
]


def _engine(
    make_engine: Callable[..., InferenceEngine], base: Path, adapters: dict[str, Path]
) -> InferenceEngine:
    engine = make_engine()
    for name, path in adapters.items():
        engine.register_adapter(str(base), name, path)
    return engine


def test_mixed_adapters_batch_together_and_match_solo_runs(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, adapters: dict[str, Path]
) -> None:
    engine = _engine(make_engine, base_dir, adapters)
    requests = [greedy(base_dir, a, text, max_new_tokens=30, ignore_eos=True) for a, text in JOBS]
    with Scheduler(engine) as scheduler:
        solo = [scheduler.submit(r).result(timeout=60).token_ids for r in requests]
        assert max(scheduler.stats.batch_sizes) == 1
        handles = [scheduler.submit(r) for r in requests]
        together = [h.result(timeout=60).token_ids for h in handles]
        stats = scheduler.stats
    assert together == solo
    assert len(set(solo)) == len(solo)  # adapters and prompts really give different answers
    assert max(stats.batch_sizes) == len(JOBS)  # all four rows shared forward passes
    assert stats.batch_sizes[len(JOBS)] >= 20
    assert stats.mixed_adapter_steps >= 20
    assert engine.load_count[str(base_dir)] == 1


def test_switching_adapters_does_not_reload_the_base(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, adapters: dict[str, Path]
) -> None:
    engine = _engine(make_engine, base_dir, adapters)
    with Scheduler(engine) as scheduler:
        for adapter in ["a", "b", None, "a", "b"]:
            done = (
                scheduler.submit(greedy(base_dir, adapter, "hi", max_new_tokens=3))
                .result(timeout=60)
                .done
            )
            assert done.finish_reason in ("stop", "length")
    assert engine.load_count[str(base_dir)] == 1
    assert sorted(engine.loaded_adapters(str(base_dir))) == ["a", "b"]


def test_cancel_frees_the_row_promptly(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, adapters: dict[str, Path]
) -> None:
    engine = _engine(make_engine, base_dir, adapters)
    long = greedy(base_dir, "a", "Write a very long story.", max_new_tokens=400, ignore_eos=True)
    short = greedy(base_dir, "b", "北京是中国的首都。", max_new_tokens=30, ignore_eos=True)
    with Scheduler(engine) as scheduler:
        expected = scheduler.submit(short).result(timeout=60).token_ids
        handle = scheduler.submit(long)
        events = handle.events(timeout=30)
        assert isinstance(next(events), TokenEvent)
        other = scheduler.submit(short)
        time.sleep(0.05)
        cancelled_at = time.perf_counter()
        handle.cancel()
        done = [e for e in events if isinstance(e, DoneEvent)][0]
        assert time.perf_counter() - cancelled_at < 2.0
        result = other.result(timeout=60)
    assert done.finish_reason == "cancelled" and done.completion_tokens < 400
    assert result.done.finish_reason == "length" and result.token_ids == expected
    assert engine.ensure_base(str(base_dir)).runner.rows == 0


def test_failing_requests_do_not_disturb_others(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, adapters: dict[str, Path]
) -> None:
    engine = _engine(make_engine, base_dir, adapters)
    good = greedy(base_dir, "a", "Tell me about Paris.", max_new_tokens=20, ignore_eos=True)
    bad = [
        greedy(base_dir, "nope", "hi"),
        greedy(base_dir, None, "word " * 600),
        greedy(base_dir, None, "hi", template="no-such-template"),
        GenerationRequest("x", str(base_dir), None, [{"role": "robot", "content": "hi"}]),
    ]
    with Scheduler(engine) as scheduler:
        expected = scheduler.submit(good).result(timeout=60).token_ids
        first = scheduler.submit(good)
        failures = [scheduler.submit(r) for r in bad]
        last = scheduler.submit(good)
        errors = [h.result(timeout=60).done for h in failures]
        assert first.result(timeout=60).token_ids == expected
        assert last.result(timeout=60).token_ids == expected
    assert all(e.finish_reason == "error" for e in errors)
    kinds = [type(e.error) for e in errors]
    assert kinds == [UnknownAdapter, PromptTooLong, ChatFormatError, ChatFormatError]


def test_stop_sequence_ends_the_answer(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    request = greedy(base_dir, None, "Tell me about Paris.", max_new_tokens=30, ignore_eos=True)
    with Scheduler(make_engine()) as scheduler:
        full = scheduler.submit(request).result(timeout=60).text
        stop = full[len(full) // 2 : len(full) // 2 + 3]
        assert stop.strip()
        cut = full[: full.index(stop)]
        stopped = scheduler.submit(
            greedy(
                base_dir,
                None,
                "Tell me about Paris.",
                max_new_tokens=30,
                ignore_eos=True,
                stop=[stop],
            )
        ).result(timeout=60)
    assert stopped.text == cut and stopped.done.finish_reason == "stop"


def test_seeded_sampling_replays(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    def request(seed: int) -> GenerationRequest:
        return GenerationRequest(
            "s", str(base_dir), None, chat("Tell me a story"), temperature=1.0, top_p=0.9,
            top_k=50, max_new_tokens=20, seed=seed, ignore_eos=True,
        )  # fmt: skip

    with Scheduler(make_engine()) as scheduler:
        first, again, other = (scheduler.submit(request(s)).result(timeout=60) for s in (1, 1, 2))
    assert first.token_ids == again.token_ids != other.token_ids
    assert first.done.time_to_first_token_s is not None and first.done.tokens_per_s > 0


def test_close_ends_pending_requests(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    scheduler = Scheduler(make_engine()).start()
    handle = scheduler.submit(greedy(base_dir, None, "story", max_new_tokens=500, ignore_eos=True))
    next(handle.events(timeout=30))
    scheduler.close()
    done = [e for e in handle.events(timeout=5) if isinstance(e, DoneEvent)][0]
    assert done.finish_reason == "cancelled"
    with pytest.raises(Exception, match="closed"):
        scheduler.submit(greedy(base_dir, None, "hi"))


@pytest.mark.parametrize("family", ["llama", "mistral", "gemma3_text"])
def test_chunked_prefill_matches_and_survives_rows_leaving(
    make_engine: Callable[..., InferenceEngine], family_dir: Callable[[str], Path], family: str
) -> None:
    base = family_dir(family)
    long_prompt = "Tell me about Paris, its museums, its river and its history. " * 3
    first = greedy(base, None, long_prompt, max_new_tokens=6, ignore_eos=True)
    # Another system prompt: the two prompts differ from their first tokens on, so a stale
    # cache row cannot hold the right keys by chance.
    second = greedy(
        base, None, long_prompt, max_new_tokens=12, ignore_eos=True, system_prompt="Be brief."
    )
    with Scheduler(make_engine()) as whole:
        expected = [whole.submit(r).result(timeout=60).token_ids for r in (first, second)]
    # 5-token chunks: the second prompt is still being prefilled when the first request ends
    # and its row is removed, so the staged row has to move with the batch.
    with Scheduler(make_engine(), prefill_chunk=5) as chunked:
        handles = [chunked.submit(r) for r in (first, second)]
        got = [h.result(timeout=60).token_ids for h in handles]
        assert chunked.stats.prefill_chunks > 20
    assert got == expected
