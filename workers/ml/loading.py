"""The one place where base models are loaded: built-in ids, local folders and hub ids.

Every source ends as a plain Hugging Face folder (safetensors + tokenizer) that is loaded the same
way, so training, evaluation and serving all see identical weights and tokenization.
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from app.catalog import (
    CatalogEntry,
    InvalidHubIdError,
    LocalFolderError,
    UnknownModelError,
    get_entry,
    inspect_local_folder,
    is_complete,
    validate_hub_id,
)
from app.storage import DataDir
from workers.ml.device import dtype_name, parse_dtype, pick_device, pick_dtype
from workers.ml.errors import InvalidModelSource, ModelLoadError
from workers.ml.hub import download_hub_model
from workers.ml.model_cache import Progress, ensure_converted, report


@dataclass(frozen=True)
class ModelInfo:
    source: str  # what the caller passed
    kind: str  # builtin | local | hub
    path: Path  # the folder actually loaded
    architecture: str
    model_type: str
    parameter_count: int
    context_length: int | None
    has_chat_template: bool
    default_chat_template: str | None  # named template to use when the model has none
    device: str
    dtype: str
    load_seconds: float
    converted: bool  # True when this call converted or downloaded the weights first


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: Any  # a transformers tokenizer; their classes share no useful base for typing
    info: ModelInfo


@dataclass(frozen=True)
class ResolvedSource:
    kind: str  # builtin | local | hub
    folder: Path
    entry: CatalogEntry | None
    fetched: bool  # this call converted or downloaded the folder


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


def _from_hub(
    kind: str,
    repo_id: str,
    data_dir: str | Path,
    progress: Progress | None,
    entry: CatalogEntry | None = None,
) -> ResolvedSource:
    fetched = not is_complete(DataDir(data_dir).hub_model(repo_id))
    return ResolvedSource(kind, download_hub_model(repo_id, data_dir, progress), entry, fetched)


def resolve_source(
    source: str, data_dir: str | Path, progress: Progress | None = None
) -> ResolvedSource:
    """Turn a source into a loadable folder, converting or downloading it first if needed.

    Order: built-in id, then an existing or path-like local folder, then a hub id org/name.
    """
    try:
        entry: CatalogEntry | None = get_entry(source)
    except UnknownModelError:
        entry = None
    if entry is not None and entry.source.kind == "hub":
        return _from_hub("builtin", entry.source.repo_id or "", data_dir, progress, entry)
    if entry is not None:
        fetched = not is_complete(DataDir(data_dir).model(entry.id))
        return ResolvedSource(
            "builtin", ensure_converted(entry.id, data_dir, progress), entry, fetched
        )
    if _looks_like_path(source):
        try:
            info = inspect_local_folder(source)
        except LocalFolderError as exc:
            raise InvalidModelSource(str(exc), code=exc.code, path=source) from exc
        return ResolvedSource("local", info.path, None, False)
    try:
        repo_id = validate_hub_id(source)
    except InvalidHubIdError as exc:
        raise InvalidModelSource(
            f"{source!r} is not a built-in model id, an existing folder, or a hub id (org/name)",
            source=source,
        ) from exc
    return _from_hub("hub", repo_id, data_dir, progress)


# transformers' from_pretrained is not thread-safe: it builds the model under process-wide
# device and dtype contexts (the meta device), so two threads loading at once (the chat engine
# and a GGUF build in the same worker) break each other with "Cannot copy out of meta tensor".
# Every from_pretrained of a model in a worker takes this lock.
LOAD_LOCK = threading.RLock()


def load_from_folder(
    folder: str | Path, *, device: torch.device | str, dtype: torch.dtype
) -> tuple[PreTrainedModel, Any]:
    """Model (eval mode, on `device`, in `dtype`) and tokenizer from a Hugging Face folder."""
    # trust_remote_code stays off: a model folder must never run code of its own in a worker.
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    with LOAD_LOCK:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=False)
        model.to(device)
    model.eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Batched training and generation need a pad token; EOS is the usual stand-in and is
        # masked out by the attention mask anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_model(
    source: str | Path,
    *,
    data_dir: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    progress: Progress | None = None,
) -> LoadedModel:
    """Load a base model from a built-in id, a local folder or a hub id.

    device/dtype default to pick_device()/pick_dtype(device). Raises ModelLoadError subclasses
    (InvalidModelSource, ModelNotInstalled, ModelUnavailable, ConversionError, DeviceUnavailable)
    whose messages are meant for users.
    """
    started = time.perf_counter()
    target_device = pick_device(device)
    target_dtype = parse_dtype(dtype) if dtype is not None else pick_dtype(target_device)
    resolved = resolve_source(str(source), data_dir, progress)
    report(progress, 0.9 if resolved.fetched else 0.1, "loading the model weights")
    try:
        model, tokenizer = load_from_folder(
            resolved.folder, device=target_device, dtype=target_dtype
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        # Broken or incompatible files surface here; keep the cause chained for the logs.
        raise ModelLoadError(f"could not load the model in {resolved.folder}: {exc}") from exc
    config = model.config
    entry = resolved.entry
    info = ModelInfo(
        source=str(source),
        kind=resolved.kind,
        path=resolved.folder,
        architecture=type(model).__name__,
        model_type=str(config.model_type),
        parameter_count=sum(p.numel() for p in model.parameters()),
        context_length=getattr(config.get_text_config(), "max_position_embeddings", None),
        has_chat_template=bool(tokenizer.chat_template),
        default_chat_template=entry.default_chat_template if entry else None,
        device=str(target_device),
        dtype=dtype_name(target_dtype),
        load_seconds=time.perf_counter() - started,
        converted=resolved.fetched,
    )
    report(progress, 1.0, "model loaded")
    return LoadedModel(model=model, tokenizer=tokenizer, info=info)
