"""Fixtures for the inference tests: tiny random models and LoRA adapters, built once."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest
import torch

from tests.inference.helpers import build_adapter, build_family_model
from workers.inference import InferenceEngine, Scheduler


@pytest.fixture(scope="session")
def inference_tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def family_dir(
    tmp_path_factory: pytest.TempPathFactory, inference_tokenizer: Any
) -> Callable[[str], Path]:
    """family -> folder of a tiny model of that family, built once per session."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            folder = tmp_path_factory.mktemp(f"tiny-{family}")
            built[family] = build_family_model(folder, inference_tokenizer, family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def base_dir(family_dir: Callable[[str], Path]) -> Path:
    return family_dir("llama")


@pytest.fixture(scope="session")
def adapters(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two adapters of the llama base: "a" (all linear layers) and "b" (attention only)."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": build_adapter(base_dir, root / "a", seed=1),
        "b": build_adapter(
            base_dir, root / "b", seed=2, rank=8, targets=["q_proj", "k_proj", "v_proj", "o_proj"]
        ),
    }


@pytest.fixture
def make_engine(tmp_path: Path) -> Callable[..., InferenceEngine]:
    def make(**kwargs: Any) -> InferenceEngine:
        kwargs.setdefault("memory_budget_bytes", 1 << 30)
        kwargs.setdefault("dtype", torch.float32)  # compared with fp32 generate()
        return InferenceEngine(tmp_path / "data", device="cpu", **kwargs)

    return make


@pytest.fixture
def scheduler(make_engine: Callable[..., InferenceEngine]) -> Iterator[Scheduler]:
    with Scheduler(make_engine()) as running:
        yield running
