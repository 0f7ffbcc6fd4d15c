"""Fixtures for the ML tests: offline hub settings and a tiny model built once per session."""

import os
from pathlib import Path
from typing import Any

# Tests must never reach a model hub. Set before anything imports huggingface_hub, which reads
# these at import time (workers.ml.hub also re-reads HF_HUB_OFFLINE at call time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest

from tests.helpers.tiny_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer Llama with SmolLM2's tokenizer (or a trained one without the package)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
