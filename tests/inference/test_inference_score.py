"""Teacher-forced scoring (Runner.score, InferenceEngine.score) and answer NLLs for evaluation:
logits equal transformers' (and peft's) own forward, and scoring leaves live sequences alone."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.inference.helpers import build_adapter
from workers.evaluation.perplexity import NoAnswerTokens, answer_nll
from workers.inference import InferenceEngine, llama_runner
from workers.inference.hf_runner import HFRunner
from workers.inference.llama_runner import LlamaRunner
from workers.ml.chat_format import IGNORE_INDEX, tokenize_conversation

IDS = [(i * 7919) % 5000 + 100 for i in range(40)]  # longer than the 12-token windows
CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "北京是哪个国家的首都？"},
    {"role": "assistant", "content": "北京是中国的首都。"},
]
# fp32 rounding differs between fused and unfused matmuls; the big random weights amplify it
# to ~2e-4 at an odd position (logits span +-15). A wrong mask, row or adapter moves them by ~1.
CLOSE: dict[str, Any] = {"atol": 5e-4, "rtol": 1e-4}


def _reference_logits(folder: Path, ids: list[int], adapter: Path | None = None) -> torch.Tensor:
    """transformers' own fp32 forward over `ids` (through peft's model for an adapter)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor([ids])).logits[0]


@pytest.mark.parametrize(
    ("family", "runner_type"),
    [
        ("llama", LlamaRunner),
        ("qwen2", LlamaRunner),
        ("gemma3_text", LlamaRunner),
        ("phi3", HFRunner),
    ],
)
def test_score_matches_the_transformers_and_peft_forward(
    make_engine: Callable[..., InferenceEngine],
    family_dir: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    family: str,
    runner_type: type,
) -> None:
    folder = family_dir(family)
    adapter = build_adapter(folder, tmp_path / "lora", seed=3)
    engine = make_engine()
    engine.register_adapter(str(folder), "a", adapter)
    base = engine.ensure_base(str(folder))
    assert isinstance(base.runner, runner_type)
    expected = _reference_logits(folder, IDS)
    got = engine.score(str(folder), None, IDS)
    assert got.dtype == torch.float32 and got.shape == (len(IDS), base.vocab_size)
    torch.testing.assert_close(got, expected, **CLOSE)
    # Several chunks on the lean runner: the later ones attend to the cached earlier ones.
    monkeypatch.setattr(llama_runner, "SCORE_CHUNK", 16)
    torch.testing.assert_close(base.runner.score(IDS, None), expected, **CLOSE)
    with_adapter = _reference_logits(folder, IDS, adapter)
    got = engine.score(str(folder), "a", IDS)
    torch.testing.assert_close(got, with_adapter, **CLOSE)
    assert not torch.allclose(with_adapter, expected, atol=1e-2)  # the adapter really mattered
    assert engine.loaded_adapters(str(folder)) == ["a"]
    assert not engine._pins  # score released what it pinned


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_score_matches_peft_with_a_dora_adapter(
    make_engine: Callable[..., InferenceEngine],
    family_dir: Callable[[str], Path],
    tmp_path: Path,
    family: str,
) -> None:
    folder = family_dir(family)
    adapter = build_adapter(folder, tmp_path / "dora", seed=4, dora=True)
    engine = make_engine()
    engine.register_adapter(str(folder), "d", adapter)
    got = engine.score(str(folder), "d", IDS)
    expected = _reference_logits(folder, IDS, adapter)
    torch.testing.assert_close(got, expected, **CLOSE)


def _live_steps(runner: Any, score: Callable[[], torch.Tensor] | None) -> list[torch.Tensor]:
    """Decode one row and prefill another in chunks, scoring mid-way when `score` is given."""
    runner.prefill(IDS[:9], "a")
    out = [runner.decode([IDS[9]])[0]]
    runner.begin(IDS[20:35], "b")
    assert runner.prefill_step(6) is None  # staged, part of its prompt cached
    if score is not None:
        score()
    out.append(runner.decode([IDS[10]])[0])  # the decoding row, and the staged one, go on
    while (first := runner.prefill_step(6)) is None:
        pass
    out.append(first)
    out.extend(runner.decode([IDS[11], IDS[36]]))
    runner.clear()
    return out


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "phi3"])
def test_score_leaves_active_and_staged_sequences_alone(
    make_engine: Callable[..., InferenceEngine],
    family_dir: Callable[[str], Path],
    tmp_path: Path,
    family: str,
) -> None:
    folder = family_dir(family)
    engine = make_engine(max_batch_size=3)
    for name, seed in (("a", 5), ("b", 6)):
        engine.ensure_adapter(str(folder), name, build_adapter(folder, tmp_path / name, seed=seed))
    runner = engine.ensure_base(str(folder)).runner
    long_ids = [(i * 104729) % 5000 + 50 for i in range(300)]  # grows the lean runner's cache
    alone = runner.score(long_ids, "b")
    scored: list[torch.Tensor] = []
    undisturbed = _live_steps(runner, None)
    disturbed = _live_steps(runner, lambda: scored.append(runner.score(long_ids, "b")))
    for before, after in zip(undisturbed, disturbed, strict=True):
        torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scored[0], alone, **CLOSE)


def test_lean_score_needs_a_free_row(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    runner = make_engine(max_batch_size=2).ensure_base(str(base_dir)).runner
    runner.prefill(IDS[:5], None)
    runner.begin(IDS[5:10], None)  # the staged sequence holds the second (last) row
    with pytest.raises(RuntimeError, match="free batch row"):
        runner.score(IDS, None)
    runner.abort_prefill()
    assert runner.score(IDS[:3], None).shape[0] == 3  # the row after the active one is free
    with pytest.raises(ValueError):
        runner.score([], None)
    with pytest.raises(ValueError):
        runner.score([5] * (runner.max_length + 1), None)
    with pytest.raises(RuntimeError, match="not attached"):
        runner.score(IDS, "nope")


def _reference_nll(
    folder: Path, tokenizer: Any, adapter: Path | None, max_length: int
) -> tuple[float, int, bool]:
    """The training loss's view, computed independently: labels from tokenize_conversation,
    peft's forward, and cross-entropy summed over the shifted label positions."""
    example = tokenize_conversation(tokenizer, CONVERSATION, max_length=max_length)
    ids = example.input_ids
    logits = _reference_logits(folder, ids, adapter)
    labels = torch.tensor(example.labels[1:])
    total = F.cross_entropy(logits[:-1], labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return float(total), int((labels != IGNORE_INDEX).sum()), example.truncated


def test_answer_nll_equals_the_training_loss_view(
    make_engine: Callable[..., InferenceEngine],
    base_dir: Path,
    adapters: dict[str, Path],
) -> None:
    engine = make_engine()
    engine.register_adapter(str(base_dir), "a", adapters["a"])
    tokenizer = engine.ensure_base(str(base_dir)).loaded.tokenizer
    for adapter_id, adapter in ((None, None), ("a", adapters["a"])):
        got = answer_nll(engine, str(base_dir), adapter_id, CONVERSATION, None)
        expected = _reference_nll(base_dir, tokenizer, adapter, max_length=512)
        assert got[1:] == expected[1:] and got[1] > 5 and got[2] is False
        assert got[0] == pytest.approx(expected[0], rel=1e-5)
    base_nll = answer_nll(engine, str(base_dir), None, CONVERSATION, None)[0]
    assert base_nll != pytest.approx(got[0], rel=1e-2)  # the adapter changes the NLL


def test_answer_nll_truncates_like_training(
    make_engine: Callable[..., InferenceEngine], base_dir: Path
) -> None:
    tokenizer = make_engine().ensure_base(str(base_dir)).loaded.tokenizer
    full = tokenize_conversation(tokenizer, CONVERSATION)
    first_answer = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    # Cut inside the second answer: the first answer and part of the second are scored.
    cut = len(full.input_ids) - 3
    got = answer_nll(make_engine(max_context=cut), str(base_dir), None, CONVERSATION, None)
    expected = _reference_nll(base_dir, tokenizer, None, max_length=cut)
    assert got[1:] == expected[1:] and expected[2] is True
    assert got[0] == pytest.approx(expected[0], rel=1e-5)
    # Cut before any answer: nothing to score.
    short = make_engine(max_context=first_answer)
    with pytest.raises(NoAnswerTokens):
        answer_nll(short, str(base_dir), None, CONVERSATION, None)
