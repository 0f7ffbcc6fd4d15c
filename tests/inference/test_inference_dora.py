"""DoRA adapters are served with peft's math: one layer against peft's own DoRA layer, and whole
greedy answers against peft's PeftModel.generate, on the lean runner and the fallback one."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.inference.helpers import build_adapter, greedy, reference_ids
from workers.inference import InferenceEngine, Scheduler
from workers.inference.hf_runner import HFRunner
from workers.inference.llama_runner import LlamaRunner
from workers.inference.lora import (
    LoraAdapter,
    LoraBank,
    LoraModule,
    ProjectionGroup,
    project,
    read_lora_adapter,
)

PROMPT = "The capital of France is Paris. 北京是中国的首都。 Tell me more!"


class _OneLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(16, 24, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def _peft_dora_layer(seed: int) -> tuple[nn.Module, LoraModule]:
    """peft's DoRA layer on a biased linear, with random A, B and magnitude, and our copy."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["proj"], use_dora=True)
    model = get_peft_model(_OneLinear(), config).eval()
    layer = model.base_model.model.proj
    with torch.no_grad():
        layer.lora_A["default"].weight.normal_(0, 0.5)
        layer.lora_B["default"].weight.normal_(0, 0.5)
        layer.lora_magnitude_vector["default"].weight.mul_(1 + 0.3 * torch.randn(24))
    ours = LoraModule(
        a=layer.lora_A["default"].weight.detach().clone(),
        b=layer.lora_B["default"].weight.detach().clone(),
        scale=float(layer.scaling["default"]),
        magnitude=layer.lora_magnitude_vector["default"].weight.detach().clone(),
    )
    return model, ours


def test_project_matches_peft_dora_layer_per_row() -> None:
    dora_model, dora = _peft_dora_layer(seed=0)
    base = dora_model.base_model.model.proj.base_layer
    plain = LoraModule(a=torch.randn(2, 16) * 0.5, b=torch.randn(24, 2) * 0.5, scale=1.5)
    bank = LoraBank(
        [ProjectionGroup(16, (("proj", 24),))],
        dtype=torch.float32,
        device=torch.device("cpu"),
        base_weight=lambda name: base.weight,
    )
    bank.add(LoraAdapter("d", Path("d"), {"proj": dora}))
    bank.add(LoraAdapter("l", Path("l"), {"proj": plain}))
    x, residual = torch.randn(3, 16), torch.randn(3, 24)
    with torch.no_grad():
        peft_rows = dora_model(x)
        base_rows = base(x)
        lora_rows = base_rows + plain.scale * (x @ plain.a.T @ plain.b.T)
    # A batch mixing a DoRA row, a base row and a plain LoRA row: each gets its own math.
    plan = bank.plan(["d", None, "l"])
    assert plan is not None
    entry = plan.entries[0]
    got = project(x, base.weight, entry, bias=base.bias)
    torch.testing.assert_close(got[0], peft_rows[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], base_rows[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2], lora_rows[2], rtol=1e-5, atol=1e-5)
    with_residual = project(x, base.weight, entry, bias=base.bias, residual=residual)
    torch.testing.assert_close(with_residual, got + residual, rtol=1e-5, atol=1e-5)
    # All rows on the DoRA adapter (the uniform plan, no mask).
    uniform = bank.plan(["d", "d", "d"])
    assert uniform is not None
    got = project(x, base.weight, uniform.entries[0], bias=base.bias)
    torch.testing.assert_close(got, peft_rows, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(peft_rows, base_rows, atol=1e-2)  # DoRA really changes the output


def _answer(
    engine: InferenceEngine, base: Path, adapter: str | None
) -> tuple[list[int], list[int]]:
    request = greedy(base, adapter, PROMPT)
    prompt = engine.encode_prompt(engine.ensure_base(str(base)), request)
    with Scheduler(engine) as scheduler:
        result = scheduler.submit(request).result(timeout=60)
    assert result.done.finish_reason in ("stop", "length"), result.done
    return prompt, list(result.token_ids)


@pytest.mark.parametrize(
    ("family", "runner"), [("llama", LlamaRunner), ("qwen2", LlamaRunner), ("phi3", HFRunner)]
)
def test_dora_adapter_matches_peft_generate(
    make_engine: Callable[..., InferenceEngine],
    family_dir: Callable[[str], Path],
    tmp_path: Path,
    family: str,
    runner: type,
) -> None:
    # qwen2's models carry q/k/v biases (DoRA must leave them unscaled); phi3 takes HFRunner.
    folder = family_dir(family)
    adapter = build_adapter(folder, tmp_path / "dora", seed=5, dora=True)
    engine = make_engine()
    engine.register_adapter(str(folder), "d", adapter)
    prompt, ids = _answer(engine, folder, "d")
    assert isinstance(engine.ensure_base(str(folder)).runner, runner)
    expected = reference_ids(folder, prompt, 24, adapter=adapter)
    assert ids == expected
    assert expected != reference_ids(folder, prompt, 24)  # the adapter changes the answer


def test_dora_and_lora_rows_share_a_batch(
    make_engine: Callable[..., InferenceEngine],
    base_dir: Path,
    adapters: dict[str, Path],
    tmp_path: Path,
) -> None:
    dora = build_adapter(base_dir, tmp_path / "dora", seed=6, dora=True)
    engine = make_engine()
    engine.register_adapter(str(base_dir), "a", adapters["a"])
    engine.register_adapter(str(base_dir), "d", dora)
    jobs = [
        ("d", "Tell me about Paris."),
        ("a", "北京是中国的首都。"),
        (None, "Hello!"),
        ("d", "Hi"),
    ]
    requests = [greedy(base_dir, a, text, max_new_tokens=20, ignore_eos=True) for a, text in jobs]
    with Scheduler(engine) as scheduler:
        solo = [scheduler.submit(r).result(timeout=60).token_ids for r in requests]
        handles = [scheduler.submit(r) for r in requests]  # all queued before any finishes
        together = [h.result(timeout=60).token_ids for h in handles]
        assert scheduler.stats.mixed_adapter_steps > 0
    assert together == solo
    base = engine.ensure_base(str(base_dir))
    prompt = engine.encode_prompt(base, requests[0])
    expected = reference_ids(base_dir, prompt, 20, adapter=dora)  # stops at EOS; ours ran on
    assert list(solo[0])[: len(expected)] == expected


def test_fallback_runner_keeps_biases_out_of_the_dora_rescale(
    family_dir: Callable[[str], Path], inference_tokenizer: Any, tmp_path: Path
) -> None:
    # qwen2's q/k/v carry biases; the lean runner serves qwen2, so drive HFRunner on it directly.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = family_dir("qwen2")
    adapter = build_adapter(folder, tmp_path / "dora", seed=7, dora=True)
    ids = inference_tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    runner = HFRunner(
        AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(),
        max_rows=2,
        max_length=128,
    )
    runner.attach(read_lora_adapter("d", adapter))
    got = runner.prefill(ids, "d")
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), adapter
    ).eval()
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor([ids])).logits[0, -1]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(runner.prefill(ids, None), expected, atol=1e-2)  # DoRA mattered
