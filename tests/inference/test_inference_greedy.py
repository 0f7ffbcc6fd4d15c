"""The engine's greedy output equals transformers' generate() for the same prompt."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.inference.helpers import FAMILIES, build_adapter, greedy, reference_ids
from workers.inference import InferenceEngine, Scheduler
from workers.inference.hf_runner import HFRunner
from workers.inference.llama_runner import LlamaRunner

PROMPT = "The capital of France is Paris. 北京是中国的首都。 Tell me more!"


def _run(engine: InferenceEngine, request) -> tuple[list[int], list[int]]:  # type: ignore[no-untyped-def]
    base = engine.ensure_base(request.base_id)
    prompt = engine.encode_prompt(base, request)
    with Scheduler(engine) as scheduler:
        result = scheduler.submit(request).result(timeout=60)
    assert result.done.finish_reason in ("stop", "length"), result.done
    assert result.done.completion_tokens == len(result.token_ids)
    return prompt, list(result.token_ids)


def test_base_model_matches_generate(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    engine = make_engine()
    prompt, ids = _run(engine, greedy(base_dir, None, PROMPT, max_new_tokens=40))
    assert isinstance(engine.ensure_base(str(base_dir)).runner, LlamaRunner)
    assert len(set(ids)) > 10  # a varied answer, so the comparison means something
    assert ids == reference_ids(base_dir, prompt, 40)


def test_adapter_matches_peft_generate(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, adapters: dict[str, Path]
) -> None:
    engine = make_engine()
    engine.register_adapter(str(base_dir), "a", adapters["a"])
    prompt, ids = _run(engine, greedy(base_dir, "a", PROMPT))
    expected = reference_ids(base_dir, prompt, 24, adapter=adapters["a"])
    assert ids == expected
    assert expected != reference_ids(base_dir, prompt, 24)  # the adapter changes the answer


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "llama"])
def test_other_families_match_generate(
    make_engine: Callable[..., InferenceEngine],
    family_dir: Callable[[str], Path],
    family: str,
    tmp_path: Path,
) -> None:
    folder = family_dir(family)
    adapter = build_adapter(folder, tmp_path / "adapter", seed=3)
    engine = make_engine()
    engine.register_adapter(str(folder), "x", adapter)
    prompt, base_ids = _run(engine, greedy(folder, None, PROMPT))
    _, adapter_ids = _run(engine, greedy(folder, "x", PROMPT))
    runner = engine.ensure_base(str(folder)).runner
    assert isinstance(runner, HFRunner if family == "phi3" else LlamaRunner)
    assert base_ids == reference_ids(folder, prompt, 24)
    assert adapter_ids == reference_ids(folder, prompt, 24, adapter=adapter)
