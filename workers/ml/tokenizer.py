"""Loading only a model's tokenizer (dataset statistics, template previews): no weights in memory.

Built-in models are converted to their cached folder first (the same folder training loads), so
the tokenizer is byte-for-byte the one training uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from workers.ml.errors import ModelLoadError
from workers.ml.loading import resolve_source
from workers.ml.model_cache import Progress


def load_tokenizer(source: str, *, data_dir: str | Path, progress: Progress | None = None) -> Any:
    resolved = resolve_source(source, data_dir, progress)
    try:
        return AutoTokenizer.from_pretrained(resolved.folder, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the tokenizer in {resolved.folder}: {exc}") from exc
