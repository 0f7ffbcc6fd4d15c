"""Engine bookkeeping: prompt limits, LRU of bases within the budget, adapter LRU, dtypes."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.inference.helpers import greedy
from workers.inference import (
    InferenceEngine,
    MemoryBudgetExceeded,
    PromptTooLong,
    Scheduler,
    UnsupportedAdapter,
)
from workers.inference.hardware import INFERENCE_DTYPE_ENV, cpu_has_fast_bf16, inference_dtype


def test_prompt_too_long_is_typed(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    engine = make_engine()
    base = engine.ensure_base(str(base_dir))
    request = greedy(base_dir, None, "word " * 600)
    with pytest.raises(PromptTooLong) as caught:
        engine.encode_prompt(base, request)
    error = caught.value
    assert error.limit == 512 and error.prompt_tokens > 512
    assert error.over_by == error.prompt_tokens - 512 and "512" in str(error)
    with Scheduler(engine) as scheduler:
        done = scheduler.submit(request).result(timeout=60).done
    assert done.finish_reason == "error" and isinstance(done.error, PromptTooLong)
    assert done.error.over_by == error.over_by


def test_generation_stops_at_the_context_limit(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    engine = make_engine(max_context=64)
    request = greedy(base_dir, None, "Hello", max_new_tokens=500, ignore_eos=True)
    prompt = len(engine.encode_prompt(engine.ensure_base(str(base_dir)), request))
    with Scheduler(engine) as scheduler:
        done = scheduler.submit(request).result(timeout=60).done
    assert done.finish_reason == "length" and done.completion_tokens == 64 - prompt + 1


def test_lru_evicts_when_the_budget_fits_one_base(
    make_engine: Callable[..., InferenceEngine], family_dir: Callable[[str], Path]
) -> None:
    llama, qwen = str(family_dir("llama")), str(family_dir("qwen2"))
    probe = make_engine()
    size = probe.ensure_base(llama).weight_bytes
    assert abs(probe.ensure_base(qwen).weight_bytes - size) < size // 4
    engine = make_engine(memory_budget_bytes=int(size * 1.5))
    with Scheduler(engine) as scheduler:
        for base in (llama, qwen, qwen, llama):
            done = (
                scheduler.submit(greedy(base, None, "hi", max_new_tokens=3)).result(timeout=60).done
            )
            assert done.finish_reason in ("stop", "length")
            assert engine.loaded_bases() == [base]
            assert engine.used_bytes() <= engine.memory_budget_bytes
    assert engine.load_count == {llama: 2, qwen: 1}


def test_both_bases_stay_when_the_budget_fits_them(
    make_engine: Callable[..., InferenceEngine], family_dir: Callable[[str], Path]
) -> None:
    llama, qwen = str(family_dir("llama")), str(family_dir("qwen2"))
    engine = make_engine()
    for base in (llama, qwen, llama, qwen):
        engine.ensure_base(base)
    assert engine.load_count == {llama: 1, qwen: 1}
    assert engine.loaded_bases() == [llama, qwen]


def test_a_base_over_budget_is_refused(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    engine = make_engine(memory_budget_bytes=1000)
    with pytest.raises(MemoryBudgetExceeded):
        engine.ensure_base(str(base_dir))
    assert engine.loaded_bases() == []


def test_adapter_lru_keeps_the_base(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, adapters: dict[str, Path]
) -> None:
    engine = make_engine(max_adapters_per_base=1)
    base = str(base_dir)
    engine.ensure_adapter(base, "a", adapters["a"])
    engine.ensure_adapter(base, "b", adapters["b"])
    assert engine.loaded_adapters(base) == ["b"]
    engine.ensure_adapter(base, "a")  # registered earlier: reloaded from its path
    assert engine.loaded_adapters(base) == ["a"]
    assert engine.load_count[base] == 1


def test_dora_config_without_magnitudes_is_refused(
    make_engine: Callable[..., InferenceEngine],
    base_dir: Path,
    adapters: dict[str, Path],
    tmp_path: Path,
) -> None:
    # A config that says DoRA over plain LoRA weights would be served as the wrong model.
    folder = tmp_path / "dora"
    folder.mkdir()
    for item in adapters["a"].iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(UnsupportedAdapter, match="DoRA magnitude"):
        make_engine().ensure_adapter(str(base_dir), "d", folder)


def test_inference_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INFERENCE_DTYPE_ENV, raising=False)
    expected = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    assert inference_dtype("cpu") == expected
    monkeypatch.setenv(INFERENCE_DTYPE_ENV, "fp32")
    assert inference_dtype("cpu") == torch.float32


def test_bf16_engine_generates(make_engine: Callable[..., InferenceEngine], base_dir: Path) -> None:
    engine = make_engine(dtype=torch.bfloat16)
    with Scheduler(engine) as scheduler:
        result = scheduler.submit(
            greedy(base_dir, None, "hi", max_new_tokens=10, ignore_eos=True)
        ).result(timeout=60)
    assert result.done.completion_tokens == 10 and result.done.finish_reason == "length"


def test_the_engine_is_pure_ml() -> None:
    # Celery, Redis, databases and the web stack belong to the callers, never to the engine.
    import ast
    import subprocess
    import sys

    code = (
        "import sys, workers.inference, workers.inference.scheduler, workers.inference.hf_runner;"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(ast.literal_eval(out.stdout))
    assert not loaded & {"celery", "kombu", "redis", "sqlalchemy", "fastapi", "starlette"}
