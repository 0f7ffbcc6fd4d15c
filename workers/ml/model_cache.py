"""Converted-model cache: GGUF built-ins become safetensors folders under {data_dir}/models/.

Each folder is written in a private temp folder, marked complete with the sentinel file and only
then renamed into place. A rename is atomic on one filesystem, so a reader sees either no folder
or a complete one, and when two workers convert at once the loser simply drops its copy.
"""

import contextlib
import errno
import importlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from app.catalog import (
    SENTINEL_NAME,
    CatalogEntry,
    ModelStatus,
    UnknownModelError,
    get_entry,
    is_complete,
    locate_packaged_gguf,
    model_status,
)
from app.storage import DataDir
from workers.ml.device import free_memory
from workers.ml.errors import ConversionError, InvalidModelSource, ModelNotInstalled

Progress = Callable[[float, str], None]
# Temp folders of crashed conversions older than this are deleted; younger ones may be live.
STALE_TMP_SECONDS = 6 * 3600


def report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def write_sentinel(folder: Path, meta: dict[str, Any]) -> None:
    """Mark `folder` complete; call it only after every other file is written."""
    body = {"created": time.time(), "transformers": transformers.__version__, **meta}
    (folder / SENTINEL_NAME).write_text(json.dumps(body, indent=2), encoding="utf-8")


def publish_folder(tmp: Path, target: Path) -> bool:
    """Rename a complete temp folder to `target`; False if another worker published first.

    On False the caller still owns `tmp` and should delete it.
    """
    for _ in range(3):
        try:
            os.rename(tmp, target)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if is_complete(target):
            return False
        # A target without sentinel was never published by this code (only complete folders
        # are renamed in): it is debris, e.g. a hand copy. Move it aside, then retry.
        junk = target.with_name(f".stale-{target.name}-{uuid.uuid4().hex}")
        with contextlib.suppress(FileNotFoundError):  # another worker moved it already
            os.rename(target, junk)
            shutil.rmtree(junk, ignore_errors=True)
    raise OSError(f"could not publish {target}: an incomplete folder keeps reappearing there")


def save_to_cache(
    model: PreTrainedModel, tokenizer: Any, target: Path, meta: dict[str, Any]
) -> Path:
    """Save a loaded model + tokenizer as a complete folder at `target`, atomically.

    If `target` is already complete (another worker won the race), the fresh copy is discarded
    and the existing folder is kept: both copies come from the same source, so either is right.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{target.name}-{uuid.uuid4().hex}")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_sentinel(tmp, meta)
        publish_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def clear_gguf_marker(model: PreTrainedModel) -> None:
    """Let save_pretrained write a GGUF-loaded model: it refuses while the quantizer is set.

    The weights are already dequantized to float tensors, so dropping the marker loses nothing.
    """
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def _remove_stale_temp(models_dir: Path) -> None:
    now = time.time()
    for path in models_dir.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)


def _gguf_location(entry: CatalogEntry, workdir: Path) -> Path:
    """Path of the entry's GGUF file; assembled sources are rebuilt inside `workdir`."""
    if entry.source.kind == "gguf_package":
        path = locate_packaged_gguf(entry)
        if path is None:
            raise ModelNotInstalled(entry.install_hint)
        return path
    if entry.source.kind == "gguf_assembled":
        # Imported only here: the package is an optional extra, and workers alone may import it.
        package = importlib.import_module(entry.source.package or "")
        # Assemble into the data dir, not the default ~/.cache: workers may have no home, and
        # the file is deleted with `workdir` once converted.
        return Path(package.assemble(workdir / (entry.source.gguf_file or "model.gguf")))
    raise ConversionError(f"{entry.id} is not a GGUF model (source kind {entry.source.kind})")


def ensure_converted(entry_id: str, data_dir: str | Path, progress: Progress | None = None) -> Path:
    """Folder of the built-in model's safetensors cache, converting from GGUF on first use."""
    try:
        entry = get_entry(entry_id)
    except UnknownModelError as exc:
        raise InvalidModelSource(str(exc)) from exc
    target = DataDir(data_dir).model(entry.id)
    if is_complete(target):
        report(progress, 1.0, "model already converted")
        return target
    status, reason = model_status(entry, DataDir(data_dir))
    if status is ModelStatus.MISSING:
        raise ModelNotInstalled(reason)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp(target.parent)
    report(progress, 0.0, f"converting {entry.display_name} from GGUF")
    try:
        _convert(entry, target, progress)
    except (ModelNotInstalled, ConversionError):
        raise
    except Exception as exc:  # any library failure becomes one readable message
        raise ConversionError(f"converting {entry.id} failed: {exc}") from exc
    finally:
        free_memory()  # the fp32 copy is garbage once _convert has returned
    report(progress, 1.0, "conversion finished")
    return target


def _convert(entry: CatalogEntry, target: Path, progress: Progress | None) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".tmp-gguf-{entry.id}-") as work:
        gguf = _gguf_location(entry, Path(work))
        report(progress, 0.05, "reading the tokenizer from the GGUF file")
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        report(progress, 0.15, "dequantizing the GGUF weights to float32")
        # float32: the GGUF blocks dequantize to it exactly; pick_dtype narrows at load time.
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        clear_gguf_marker(model)
        report(progress, 0.8, "saving the safetensors cache")
        save_to_cache(model, tokenizer, target, {"source": entry.id, "gguf": gguf.name})
