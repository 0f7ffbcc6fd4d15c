"""Fixtures for the training tests: chat datasets written as normalized JSONL and a helper that
runs train() on them with the tiny random Llama (tiny_model_dir, from tests/conftest.py)."""

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Never reach a model hub (set before anything imports huggingface_hub).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The tiny model's ops take microseconds, so two threads only add synchronisation; when
    other processes share the CPUs, each parallel region can wait a whole scheduler slice for
    its second thread (30 tiny steps: 12 s with 2 threads, 0.8 s with 1, under load)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def chat(user: str, assistant: str, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


def arithmetic_rows(n: int) -> list[dict[str, Any]]:
    """Short conversations of varied length (the numbers grow)."""
    return [chat(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.") for i in range(n)]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(16))


@pytest.fixture
def run_train(tiny_model_dir: Path, tmp_path: Path) -> Callable[..., Any]:
    """run_train(config_overrides, train_path, stop_at=(step, "stop"|"cancel"), **train_kwargs)
    -> (TrainResult, ListReporter). Defaults: fp32, no validation, lr 1e-2, 1 epoch, no dropout,
    16 arithmetic conversations."""
    from app.schemas.training import TrainingConfig
    from workers.training import ListReporter, never_stop, train

    def run(
        overrides: dict[str, Any] | None = None,
        train_path: Path | None = None,
        *,
        stop_at: tuple[int, str] | None = None,
        out_dir: Path | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        settings: dict[str, Any] = {
            "precision": "fp32",
            "val_percent": 0,
            "learning_rate": 1e-2,
            "epochs": 1,
            "batch_size": 4,
            "dropout": 0.0,
        }
        settings.update(overrides or {})
        reporter = ListReporter()
        should_stop = never_stop
        if stop_at is not None:

            def should_stop() -> str | None:
                return stop_at[1] if len(reporter.events) >= stop_at[0] else None

        result = train(
            TrainingConfig(**settings),
            str(tiny_model_dir),
            tmp_path / "data",
            train_path or write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(16)),
            out_dir or tmp_path / "out",
            reporter,
            should_stop,
            **kwargs,
        )
        return result, reporter

    return run
