"""GGUF files for serving chat with llama.cpp, made with the export pipeline's own tools.

One file per (base model, version, chat template, quantization): the base's Hugging Face folder
(or the version merged into it, exactly as the `merged` export does it) with the platform's
resolved chat template saved beside the tokenizer, converted by llama.cpp's converter. llama.cpp
then renders prompts from the file's own metadata, so every engine formats a conversation the
same way. Files appear under their final name only when complete.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.export.gguf import convert_to_gguf
from workers.export.merged import export_merged
from workers.export.tokenizer_files import save_tokenizer

# What llama.cpp serves on CPU: q8_0 decodes ~1.4x faster than f16 on 2 cores and stays within
# 0.3 % of f16's perplexity on SmolLM2 (docs/export.md); f16 can be chosen per worker.
DEFAULT_QUANT = "q8_0"
# Linked from the base's folder; never the tokenizer's files, which are written anew (writing
# through a hard link would change the base's own copy).
_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")


@dataclass(frozen=True)
class ServedModel:
    """What a chat request names: a base, optionally a version's adapter, and its template."""

    base: str  # the loader's source (built-in id, local folder)
    adapter_id: str | None = None
    adapter_path: str | None = None
    template: str | None = None  # a named template or None (the tokenizer's own)

    def cache_name(self, quant: str) -> str:
        """The file's name: a digest of everything that changes its contents (the adapter's
        files by path, size and time, so a retrained version never reuses an old file)."""
        raw = "\0".join(
            [self.base, self.adapter_id or "", self.template or "", quant, _adapter_stamp(self)]
        )
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        label = (self.adapter_id or "base").replace("/", "_")[:40]
        return f"{label}-{digest}-{quant}.gguf"


def _adapter_stamp(model: ServedModel) -> str:
    if not model.adapter_path:
        return ""
    folder = Path(model.adapter_path)
    stamps = [
        f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        for f in sorted(folder.glob("adapter_*"))
        if f.is_file()
    ]
    return f"{folder.resolve()}|{'|'.join(stamps)}"


def build_serving_gguf(
    model: ServedModel,
    loaded_folder: Path,
    tokenizer: Any,
    out: Path,
    *,
    quant: str = DEFAULT_QUANT,
    work_dir: Path | None = None,
) -> Path:
    """Write the GGUF for `model` to `out`. `loaded_folder` and `tokenizer` are the base's, as
    workers.ml.loading.load_model gives them (the folder in float32 safetensors)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir or out.parent, prefix=".build-") as tmp:
        folder = Path(tmp) / "hf"
        if model.adapter_path:
            export_merged(loaded_folder, tokenizer, model.adapter_path, model.template, folder)
        else:
            # The base's weights as they are (linked, not copied), its tokenizer re-saved with
            # the template the platform renders its prompts with.
            folder.mkdir()
            for item in Path(loaded_folder).iterdir():
                weights = item.suffix == ".safetensors" or item.name in _MODEL_FILES
                if item.is_file() and weights:
                    _link_or_copy(item, folder / item.name)
            save_tokenizer(tokenizer, model.template, folder)
        return convert_to_gguf(folder, out, quant, model_name=model.adapter_id or "base")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:  # another filesystem
        shutil.copyfile(source, target)
