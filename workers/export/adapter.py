"""The adapter export: a zip of the PEFT adapter, its tokenizer with the chat template, a README.

The adapter files are shipped as PEFT saved them (adapter_config.json and
adapter_model.safetensors), so `PeftModel.from_pretrained(base, unzipped_folder)` loads exactly
the weights the platform serves. An adapter saved as adapter_model.bin only is converted to
safetensors, which loads without running pickle code.
"""

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.error_codes import ExportError
from workers.export.archive import zip_folder
from workers.export.errors import ExportFailed
from workers.export.readme import render_readme
from workers.export.tokenizer_files import save_tokenizer

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
BIN_FILE = "adapter_model.bin"

Progress = Callable[[str], None]


def _bin_to_safetensors(source: Path, target: Path) -> None:
    import torch
    from safetensors.torch import save_file

    # weights_only: a .bin is a pickle; never let it run code in the worker.
    state = torch.load(source, map_location="cpu", weights_only=True)
    # safetensors refuses tensors that share memory or are views; give each its own storage.
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(target))


def copy_adapter_files(adapter_dir: Path, folder: Path) -> dict[str, Any]:
    """Copy the adapter's config and weights (as safetensors) into `folder`; its config."""
    config_path = adapter_dir / CONFIG_FILE
    missing = [CONFIG_FILE] if not config_path.is_file() else []
    has_weights = (adapter_dir / SAFETENSORS_FILE).is_file() or (adapter_dir / BIN_FILE).is_file()
    if not has_weights:
        missing.append(SAFETENSORS_FILE)
    if missing:
        raise ExportFailed(
            f"the adapter folder {adapter_dir} lacks {', '.join(missing)}",
            ExportError.ADAPTER_MISSING,
            path=str(adapter_dir),
            missing=", ".join(missing),
        )
    shutil.copyfile(config_path, folder / CONFIG_FILE)
    if (adapter_dir / SAFETENSORS_FILE).is_file():
        shutil.copyfile(adapter_dir / SAFETENSORS_FILE, folder / SAFETENSORS_FILE)
    else:
        _bin_to_safetensors(adapter_dir / BIN_FILE, folder / SAFETENSORS_FILE)
    config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    return config


def export_adapter(
    adapter_dir: str | Path,
    tokenizer: Any,
    chat_template: str | None,
    info: dict[str, Any],
    out_zip: str | Path,
    *,
    progress: Progress | None = None,
) -> Path:
    """Write the adapter export to `out_zip` (atomically) and return its path.

    adapter_dir: a PEFT adapter folder (a version's adapter_path).
    tokenizer: the base model's tokenizer (LoadedModel.tokenizer); it is not modified.
    chat_template: the project's template as resolve_template takes it (None, "tokenizer", a
        name, raw Jinja); the zip's tokenizer carries the resolved Jinja.
    info: what the README reports; see workers.export.readme for the keys (base_model needed).
    progress: called with a phase name ("adapter", "tokenizer", "readme", "zip").
    Raises ExportFailed(adapter_missing; path, missing) when the folder is not a complete
    adapter.
    """
    report = progress or (lambda phase: None)
    source, final = Path(adapter_dir), Path(out_zip)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Stage next to the output, not in /tmp: that disk is the one sized for exports.
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".stage-") as stage_name:
        stage = Path(stage_name)
        report("adapter")
        config = copy_adapter_files(source, stage)
        report("tokenizer")
        template_name, _ = save_tokenizer(tokenizer, chat_template, stage)
        report("readme")
        readme = render_readme(info, config, template_name)
        (stage / "README.md").write_text(readme, encoding="utf-8")
        report("zip")
        return zip_folder(stage, final)
