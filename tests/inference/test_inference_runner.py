"""Runner level: batched rows give the logits each row gets alone; the LoRA mixing math."""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.inference.helpers import build_adapter
from workers.inference import InferenceEngine, llama_runner
from workers.inference.lora import LoraAdapter, LoraBank, LoraModule, ProjectionGroup, apply_lora

PROMPTS = [
    [1, 520, 7, 99, 1000, 31, 5, 77],
    [1, 4000, 12],
    [1, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29],
]


@pytest.mark.parametrize("family", ["llama", "qwen3", "mistral", "gemma3_text"])
def test_batched_rows_match_rows_alone(
    make_engine: Callable[..., InferenceEngine],
    family_dir: Callable[[str], Path],
    family: str,
    tmp_path: Path,
) -> None:
    folder = str(family_dir(family))
    engine = make_engine()
    for name, seed in (("a", 5), ("b", 6)):
        engine.ensure_adapter(folder, name, build_adapter(Path(folder), tmp_path / name, seed=seed))
    runner = engine.ensure_base(folder).runner
    adapters = ["a", None, "b"]
    steps = [[3, 4, 5], [10, 11, 12], [40, 41, 42], [7, 8, 9]]

    alone = []
    for prompt, adapter in zip(PROMPTS, adapters, strict=True):
        rows = [runner.prefill(prompt, adapter)]
        rows += [runner.decode([step[len(alone)]])[0] for step in steps]
        runner.remove_row(0)
        alone.append(torch.stack(rows))

    first = [runner.prefill(p, a) for p, a in zip(PROMPTS, adapters, strict=True)]
    together = [torch.stack(first)] + [runner.decode(step) for step in steps]
    batched = torch.stack(together, dim=1)  # [rows, steps + 1, vocab]
    for row in range(len(PROMPTS)):
        torch.testing.assert_close(batched[row], alone[row], atol=2e-4, rtol=1e-4)
    # Rows leave from the middle: the last row takes the freed index and keeps its state.
    runner.remove_row(0)
    logits = runner.decode([50, 51])
    runner.clear()
    runner.prefill(PROMPTS[2], "b")
    for step in steps:
        runner.decode([step[2]])
    torch.testing.assert_close(logits[0], runner.decode([50])[0], atol=2e-4, rtol=1e-4)
    runner.clear()


def test_lora_plan_mixes_adapters_per_row() -> None:
    torch.manual_seed(0)
    group = ProjectionGroup(6, (("q", 4), ("k", 2)))
    bank = LoraBank([group], dtype=torch.float32, device=torch.device("cpu"))
    weights = {}
    for name, rank, targets in (("x", 2, ("q", "k")), ("y", 3, ("k",))):
        modules = {
            t: LoraModule(torch.randn(rank, 6), torch.randn(size, rank), 0.5)
            for t, size in (("q", 4), ("k", 2))
            if t in targets
        }
        weights[name] = modules
        bank.add(LoraAdapter(name, Path("."), modules))
    inputs = torch.randn(4, 6)
    rows = ["x", None, "y", "x"]
    plan = bank.plan(rows)
    assert plan is not None
    out = apply_lora(torch.zeros(4, 6), inputs, plan.entries[0])
    for row, name in enumerate(rows):
        expected = torch.zeros(6)
        for target, (start, end) in (("q", (0, 4)), ("k", (4, 6))):
            module = weights.get(name or "", {}).get(target)
            if module is not None:
                expected[start:end] = module.b @ (module.a @ inputs[row]) * module.scale
        torch.testing.assert_close(out[row], expected)


def test_large_idle_cache_is_released(
    make_engine: Callable[..., InferenceEngine], base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llama_runner, "IDLE_CAPACITY", 300)
    runner = make_engine().ensure_base(str(base_dir)).runner
    runner.prefill(list(range(1, 100)), None)
    runner.prefill([1, 2, 3], None)
    for _ in range(10):
        runner.decode([5, 6])
    held = runner.cache.nbytes
    runner.remove_row(1)
    runner.remove_row(0)
    assert runner.cache.nbytes == held > 0  # 256 positions: small enough to keep
    runner.prefill(list(range(1, 400)), None)
    assert runner.cache.capacity > 300
    runner.remove_row(0)
    assert runner.cache.nbytes == 0


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral", "gemma3_text", "phi3"])
def test_logits_match_the_transformers_forward(
    make_engine: Callable[..., InferenceEngine], family_dir: Callable[[str], Path], family: str
) -> None:
    # Logits, not only greedy tokens: a random tiny model can keep its argmax through a
    # real bug (e.g. a missing sliding window), its logits cannot.
    from transformers import AutoModelForCausalLM

    folder = family_dir(family)
    runner = make_engine().ensure_base(str(folder)).runner
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = [(i * 7919) % 5000 + 100 for i in range(40)]  # longer than the 12-token windows
    got = [runner.prefill(ids[:30], None)] + [runner.decode([t])[0] for t in ids[30:]]
    runner.clear()
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0, 29:]
    torch.testing.assert_close(torch.stack(got), expected, atol=1e-4, rtol=1e-4)
