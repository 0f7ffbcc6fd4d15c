"""The CLI, out-of-memory translation, and per-epoch evaluation with an explicit val file."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training.conftest import arithmetic_rows, write_jsonl
from workers.training.cli import main
from workers.training.errors import TrainingOOM, out_of_memory_as_training_error


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
def test_out_of_memory_becomes_training_oom_with_advice(error: Exception) -> None:
    with pytest.raises(TrainingOOM) as caught:
        with out_of_memory_as_training_error(8, 2048, False, "cpu"):
            raise error
    message = str(caught.value)
    for hint in ("`batch_size` (now 8", "`max_length` (now 2048)", "gradient_checkpointing"):
        assert hint in message
    assert "qlora" in message and caught.value.__cause__ is error
    # What the job page renders, in the reader's language (app.error_codes).
    assert caught.value.code == "oom"
    assert caught.value.params == {
        "batch_size": 8,
        "max_length": 2048,
        "gradient_checkpointing": False,
        "device": "cpu",
    }


def test_other_runtime_errors_pass_through() -> None:
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with out_of_memory_as_training_error(8, 2048, True, "cuda:0"):
            raise RuntimeError("shape mismatch")


def test_cli_trains_and_prints_progress(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"batch_size": 8, "epochs": 1, "precision": "fp32"}))
    data = write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(16))
    val = write_jsonl(tmp_path / "val.jsonl", arithmetic_rows(3))
    argv = [str(config), str(data), str(tmp_path / "out"), "--base-model", str(tiny_model_dir)]
    code = main([*argv, "--data-dir", str(tmp_path / "d"), "--val", str(val)])
    out = capsys.readouterr().out
    assert code == 0
    assert "step 1/2" in out and "step 2/2" in out and "eval " in out
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    assert '"status": "completed"' in out


def test_cli_reports_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"method": "qlora"}))
    code = main([str(config), str(tmp_path / "x.jsonl"), str(tmp_path / "o"), "--device", "cpu"])
    assert code == 2 and "qlora" in capsys.readouterr().err


def test_default_evaluation_runs_at_each_epoch_end(run_train: Any) -> None:
    result, reporter = run_train({"batch_size": 4, "epochs": 2, "val_percent": 25})
    evaluated = [e["step"] for e in reporter.events if e["eval_loss"] is not None]
    assert evaluated == [3, 6]  # 12 training rows / batch 4 = 3 steps an epoch
    assert result.eval_loss == reporter.events[-1]["eval_loss"]
    assert result.checkpoint_path is not None and result.checkpoint_path.name == "step-3"
