"""train() end to end on the tiny model: outputs, metrics, stopping, resuming, errors."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from app.schemas.training import TrainingConfig
from tests.training.conftest import chat, write_jsonl
from workers.training import EmptyDataset, ListReporter, never_stop, train
from workers.training.checkpoint import checkpoint_dirs
from workers.training.reporter import METRIC_KEYS


def test_two_steps_write_a_loadable_adapter_that_changes_logits(
    run_train: Any, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _ = run_train({"batch_size": 8})  # 16 rows: 2 steps
    assert (result.status, result.steps, result.total_steps) == ("completed", 2, 2)
    adapter = result.adapter_path
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["peft_type"] == "LORA"
    assert "lm_head" not in str(config["target_modules"])

    ids = tiny_tokenizer("What is 3 plus 3?", return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, adapter).eval()
        after = tuned(ids).logits
    assert not torch.allclose(before, after, atol=1e-4)
    assert result.versions["peft"] and result.peak_rss_bytes > 0
    assert result.info["loss"] == "selective"


def test_reporter_gets_one_metrics_event_per_step(run_train: Any) -> None:
    result, reporter = run_train({"batch_size": 2, "val_percent": 25, "eval_every_steps": 2})
    n = result.total_steps
    assert n == 6 and reporter.total_steps == n  # 12 training rows / batch 2
    assert reporter.calls[0] == "start" and reporter.calls[-1] == "end"
    assert reporter.calls.count("metrics") == n and reporter.result is result
    assert [e["step"] for e in reporter.events] == list(range(1, n + 1))
    for event in reporter.events:
        assert set(METRIC_KEYS) <= set(event)
        assert event["total_steps"] == n and event["tokens_per_s"] > 0 and event["eta_s"] >= 0
        json.dumps(event)  # JSON-able
    evaluated = [e["step"] for e in reporter.events if e["eval_loss"] is not None]
    assert evaluated == [2, 4, 6]
    assert reporter.events[-1]["epoch"] == pytest.approx(1.0)
    assert reporter.events[-1]["eta_s"] == 0
    assert result.eval_loss == reporter.events[-1]["eval_loss"]
    assert reporter.info["val_examples"] == 4 and reporter.info["train_examples"] == 12


def test_loss_decreases_on_a_repetitive_dataset(run_train: Any, tmp_path: Path) -> None:
    rows = [chat("Say the magic words.", "Open sesame, open sesame!")] * 8
    path = write_jsonl(tmp_path / "magic.jsonl", rows)
    result, reporter = run_train(
        {"epochs": 30, "batch_size": 8, "checkpoint_every_steps": 100}, path
    )
    losses = reporter.losses
    assert len(losses) == 30
    # The tiny model's tied embeddings are random with std 0.02 and frozen, so its logits stay
    # small and the loss cannot fall far below ln(vocab) ~ 10.8; ~0.7 is what 30 steps give.
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.4
    assert losses[-1] < min(losses[:5])
    assert result.train_loss < losses[0]


def test_gradient_accumulation_matches_one_big_batch(run_train: Any, tmp_path: Path) -> None:
    # Four conversations of different lengths: 1 step of batch 4, or 1 step of 2 x batch 2.
    rows = [
        chat("Hi", "Hello!"),
        *[chat(f"Count to {i}.", " ".join(map(str, range(i)))) for i in (3, 6, 9)],
    ]
    path = write_jsonl(tmp_path / "four.jsonl", rows)
    big, rep_big = run_train({"batch_size": 4}, path, out_dir=tmp_path / "big")
    acc, rep_acc = run_train(
        {"batch_size": 2, "gradient_accumulation": 2}, path, out_dir=tmp_path / "acc"
    )
    assert big.steps == acc.steps == 1
    assert rep_acc.losses[0] == pytest.approx(rep_big.losses[0], rel=1e-5)
    assert rep_acc.events[0]["grad_norm"] == pytest.approx(rep_big.events[0]["grad_norm"], rel=1e-4)
    from safetensors.torch import load_file

    a = load_file(big.adapter_path / "adapter_model.safetensors")
    b = load_file(acc.adapter_path / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def test_cancel_keeps_the_checkpoint_and_saves_no_adapter(run_train: Any) -> None:
    result, reporter = run_train(
        {"batch_size": 2, "checkpoint_every_steps": 1}, stop_at=(3, "cancel")
    )
    assert result.status == "cancelled" and result.steps == 3
    assert result.adapter_path is None
    out = result.checkpoint_path.parents[1]
    assert not (out / "adapter").exists()
    assert [p.name for p in checkpoint_dirs(out)] == ["step-2", "step-3"]  # the last 2 kept
    assert result.checkpoint_path.name == "step-3"
    assert (result.checkpoint_path / "adapter" / "adapter_model.safetensors").is_file()
    assert reporter.calls[-1] == "end"


def test_stop_saves_the_adapter_and_a_checkpoint(run_train: Any) -> None:
    result, _ = run_train({"batch_size": 2}, stop_at=(2, "stop"))
    assert result.status == "stopped" and result.steps == 2
    assert (result.adapter_path / "adapter_model.safetensors").is_file()
    assert result.checkpoint_path.name == "step-2"


def test_resume_reproduces_an_uninterrupted_run(run_train: Any, tmp_path: Path) -> None:
    # Dropout on, so the restored random state matters; 2 epochs, so the resume crosses one.
    settings = {"batch_size": 2, "dropout": 0.1, "epochs": 2, "checkpoint_every_steps": 3}
    full, rep_full = run_train(settings, out_dir=tmp_path / "full")
    first, _ = run_train(settings, out_dir=tmp_path / "resumed", stop_at=(5, "cancel"))
    assert first.checkpoint_path.name == "step-3"
    resumed, rep_resumed = run_train(
        settings, out_dir=tmp_path / "resumed", resume_from=first.checkpoint_path
    )
    assert rep_resumed.info["resumed_from_step"] == 3
    assert [e["step"] for e in rep_resumed.events] == list(range(4, full.steps + 1))
    assert rep_resumed.losses == pytest.approx(rep_full.losses[3:], rel=1e-6, abs=1e-7)
    assert resumed.steps == full.steps and resumed.tokens_seen == full.tokens_seen
    assert resumed.status == "completed"


def test_empty_dataset_raises_before_training(run_train: Any, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "no answer"}]}] * 3
    path = write_jsonl(tmp_path / "empty.jsonl", rows)
    with pytest.raises(EmptyDataset, match="all 3 training rows were dropped"):
        run_train({}, path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"method": "qlora"}, "`method`=qlora needs a CUDA GPU"),
        ({"precision": "fp16"}, "`precision`=fp16 needs a CUDA GPU"),
    ],
)
def test_gpu_only_settings_on_cpu_are_clear_errors(
    tmp_path: Path, setting: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train(
            TrainingConfig(**setting),
            "unused",
            tmp_path,
            tmp_path / "x.jsonl",
            tmp_path,
            ListReporter(),
            never_stop,
            device="cpu",
        )


def test_bf16_autocast_trains(run_train: Any) -> None:
    result, reporter = run_train({"precision": "bf16", "batch_size": 8})
    assert reporter.info["precision"] == "bf16" and result.status == "completed"
    assert all(e["loss"] == e["loss"] for e in reporter.events)  # no NaN
