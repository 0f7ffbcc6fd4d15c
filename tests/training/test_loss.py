"""The selective loss (trainable rows only, chunked, fused gradient) against the reference."""

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from app.schemas.training import TrainingConfig
from tests.training.conftest import arithmetic_rows, chat
from workers.ml.chat_format import IGNORE_INDEX
from workers.training import loss as loss_module
from workers.training.build import build_peft_model
from workers.training.data import collate, tokenize_rows
from workers.training.loss import _LinearCrossEntropy, masked_loss_sum, reference_loss_matches


def _lora_model(tiny_model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    peft_model = build_peft_model(model, TrainingConfig(dropout=0.0))
    for name, p in peft_model.named_parameters():  # non-zero B, so LoRA affects the output
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return peft_model.get_base_model()


def _batch(tokenizer: Any) -> dict[str, torch.Tensor]:
    rows = [
        *arithmetic_rows(3),
        chat("Name a city.", "Paris.", system="Be brief."),
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris is the capital."},
            ]
        },
    ]
    examples, _ = tokenize_rows(tokenizer, rows, max_length=128)
    return collate(examples, tokenizer.pad_token_id)  # varied lengths: right padding


def test_selective_loss_equals_hf_masked_loss(tiny_model_dir: Path, tiny_tokenizer: Any) -> None:
    model = _lora_model(tiny_model_dir)
    batch = _batch(tiny_tokenizer)
    assert batch["attention_mask"].eq(0).any()  # padding present
    model.zero_grad()
    total, count = masked_loss_sum(model, batch, torch.float32)
    (total / count).backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ref = model(**batch).loss  # HF: full logits, shift, mean over labels != -100
    ref.backward()
    shifted = batch["labels"][:, 1:]
    assert count == int((shifted != IGNORE_INDEX).sum())
    assert abs(float(total.detach() / count) - float(ref.detach())) < 1e-5
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert reference_loss_matches(model, batch)


def test_only_assistant_tokens_reach_the_loss(tiny_model_dir: Path, tiny_tokenizer: Any) -> None:
    model = _lora_model(tiny_model_dir)
    batch = _batch(tiny_tokenizer)
    # The targets are exactly the assistant turns (with their end-of-turn marker).
    row = batch["labels"][4]
    targets = tiny_tokenizer.decode(row[row != IGNORE_INDEX].tolist())
    assert "Hello!" in targets and "Paris is the capital." in targets
    assert "Hi" not in targets.replace("Hello", "") and "France" not in targets
    # Padding never reaches the loss: rewriting pad ids leaves it bit-for-bit unchanged.
    base, count = masked_loss_sum(model, batch, torch.float32)
    changed = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 7))
    same, same_count = masked_loss_sum(model, changed, torch.float32)
    assert torch.equal(same, base) and same_count == count


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize(("scale", "softcap"), [(1.0, None), (0.5, None), (1.0, 3.0)])
def test_linear_cross_entropy_matches_autograd(
    with_bias: bool, scale: float, softcap: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 7 * 50)  # 7-row chunks: several
    torch.manual_seed(0)
    rows = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(50, dtype=torch.float64, requires_grad=True) if with_bias else None
    targets = torch.randint(0, 50, (23,))
    total = _LinearCrossEntropy.apply(rows, weight, bias, targets, torch.float64, scale, softcap)
    (total * 0.5).backward()
    got = [rows.grad, weight.grad, None if bias is None else bias.grad]
    rows.grad = weight.grad = None
    if bias is not None:
        bias.grad = None
    logits = (rows @ weight.T + (bias if bias is not None else 0)) * scale
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    ref = F.cross_entropy(logits, targets, reduction="sum")
    (ref * 0.5).backward()
    torch.testing.assert_close(total, ref)
    torch.testing.assert_close(got[0], rows.grad)
    torch.testing.assert_close(got[1], weight.grad)
    if bias is not None:
        torch.testing.assert_close(got[2], bias.grad)
