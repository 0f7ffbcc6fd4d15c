"""Catalog of base models: built-ins, their on-disk status, and checks on user-given sources.

Runs in the web process, so it must never import torch, transformers or the model packages
themselves: presence is checked with importlib.util.find_spec, local folders by reading JSON.
"""

import functools
import importlib.util
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from app.storage import DataDir

CATALOG_FILE = Path(__file__).with_name("catalog_models.yaml")
# Written last into a converted/downloaded model folder: a folder without it is incomplete.
SENTINEL_NAME = ".tunelab-complete"

# Conservative allow-list of config.json model_type values that load with AutoModelForCausalLM
# (tests/ml checks each against transformers' causal-LM mapping).
SUPPORTED_MODEL_TYPES = frozenset(
    """llama mistral mixtral qwen2 qwen2_moe qwen3 qwen3_moe gemma gemma2 gemma3 gemma3_text
    phi phi3 gpt2 gpt_neox falcon stablelm starcoder2 olmo olmo2 smollm3 granite cohere""".split()
)
# Dense llama-like layouts whose size the estimate below computes exactly (up to norms/biases).
_LLAMA_LIKE = frozenset(
    "llama mistral qwen2 qwen3 gemma gemma2 gemma3 gemma3_text smollm3 granite olmo olmo2".split()
)
# gemma3 (multimodal) loads as Gemma3ForConditionalGeneration, which still generates text.
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")
_HUB_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


class CatalogError(Exception):
    """Base of every error this module raises; str(error) is meant for the user."""


class UnknownModelError(CatalogError):
    """No built-in model has this id."""


class InvalidHubIdError(CatalogError):
    """A hub id is not of the form org/name."""


class LocalFolderError(CatalogError):
    """A local folder cannot be used as a base model.

    `code` is stable for programs and translations: not_found, not_a_directory, no_config,
    bad_config, unsupported_architecture, no_tokenizer, no_weights.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ModelStatus(StrEnum):
    READY = "ready"
    NEEDS_CONVERSION = "needs_conversion"
    NEEDS_DOWNLOAD = "needs_download"
    MISSING = "missing"


@dataclass(frozen=True)
class ModelSource:
    kind: str  # gguf_package | gguf_assembled | hub
    package: str | None = None
    gguf_file: str | None = None
    requires: tuple[str, ...] = ()
    repo_id: str | None = None


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    display_name: str
    family: str
    architecture: str
    model_type: str
    parameter_count: int
    context_length: int
    languages: tuple[str, ...]
    licence: str
    has_chat_template: bool
    default_chat_template: str | None
    default: bool
    description: str
    source: ModelSource
    install_hint: str


@dataclass(frozen=True)
class LocalModelInfo:
    path: Path
    model_type: str
    architecture: str | None
    parameter_estimate: int | None
    context_length: int | None
    has_chat_template: bool
    weight_format: str  # safetensors | bin


def _entry_from_dict(raw: dict[str, Any]) -> CatalogEntry:
    src = dict(raw["source"])
    src["requires"] = tuple(src.get("requires", ()))
    return CatalogEntry(
        **{**raw, "source": ModelSource(**src), "languages": tuple(raw["languages"])}
    )


@functools.cache
def load_catalog(path: Path = CATALOG_FILE) -> tuple[CatalogEntry, ...]:
    """Built-in models in file order (cached: the file ships with the code)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(_entry_from_dict(raw) for raw in data["models"])


def get_entry(entry_id: str) -> CatalogEntry:
    for entry in load_catalog():
        if entry.id == entry_id:
            return entry
    known = ", ".join(e.id for e in load_catalog())
    raise UnknownModelError(f"unknown built-in model {entry_id!r} (known: {known})")


def default_entry() -> CatalogEntry:
    return next(e for e in load_catalog() if e.default)


def cache_folder(entry: CatalogEntry, data_dir: DataDir) -> Path:
    """The data-dir folder that holds a built-in's loadable files once fetched: its hub
    download for a hub-sourced entry, else its GGUF converted to safetensors."""
    if entry.source.kind == "hub" and entry.source.repo_id:
        return data_dir.hub_model(entry.source.repo_id)
    return data_dir.model(entry.id)


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / SENTINEL_NAME).is_file()


def _module_dir(name: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def locate_packaged_gguf(entry: CatalogEntry) -> Path | None:
    """Path of a gguf_package entry's GGUF file, or None when the package or file is absent."""
    if entry.source.kind != "gguf_package" or not entry.source.package:
        return None
    folder = _module_dir(entry.source.package)
    path = folder / entry.source.gguf_file if folder and entry.source.gguf_file else None
    return path if path and path.is_file() else None


def model_status(entry: CatalogEntry, data_dir: DataDir) -> tuple[ModelStatus, str]:
    """Whether a built-in model can load now, and a sentence saying why (for the UI)."""
    cache = cache_folder(entry, data_dir)
    if is_complete(cache):
        return ModelStatus.READY, f"converted weights are cached in {cache}"
    src = entry.source
    if src.kind == "hub":
        return ModelStatus.NEEDS_DOWNLOAD, f"downloads {src.repo_id} on first use"
    if src.kind == "gguf_package":
        if locate_packaged_gguf(entry):
            return ModelStatus.NEEDS_CONVERSION, "first load converts the GGUF file (~20 s)"
        if _module_dir(src.package or "") is not None:
            return ModelStatus.MISSING, f"package {src.package} lacks {src.gguf_file}; reinstall it"
        return ModelStatus.MISSING, entry.install_hint
    if src.kind == "gguf_assembled":
        modules = (src.package or "", *src.requires)
        if all(_module_dir(m) is not None for m in modules):
            return ModelStatus.NEEDS_CONVERSION, "first load assembles and converts the GGUF file"
        return ModelStatus.MISSING, entry.install_hint
    return ModelStatus.MISSING, f"unknown source kind {src.kind!r} in the catalog"


def validate_hub_id(value: str) -> str:
    """Return the stripped id if it has the form org/name, else raise InvalidHubIdError."""
    text = value.strip()
    parts = text.split("/")
    ok = len(parts) == 2 and all(
        _HUB_PART.match(p) and ".." not in p and "--" not in p and len(p) <= 96 for p in parts
    )
    if not ok:
        raise InvalidHubIdError(
            f"{value!r} is not a hub model id: expected org/name, e.g. HuggingFaceTB/SmolLM2-135M"
        )
    return text


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    # Multimodal configs (gemma3) nest the language model's sizes under text_config.
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def estimate_parameters(config: dict[str, Any]) -> int | None:
    """Parameter count of a dense llama-like config (embeddings + layers), else None."""
    cfg = _text_config(config)
    if config.get("model_type") not in _LLAMA_LIKE:
        return None
    try:
        h, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
        vocab, inter = int(cfg["vocab_size"]), int(cfg["intermediate_size"])
        heads = int(cfg["num_attention_heads"])
        kv = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or h // heads)
    except (KeyError, TypeError, ValueError):
        return None
    attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    per_layer = attention + 3 * h * inter + 2 * h
    tied = cfg.get("tie_word_embeddings", True)
    return vocab * h * (1 if tied else 2) + layers * per_layer + h


def _context_length(config: dict[str, Any]) -> int | None:
    cfg = _text_config(config)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(cfg.get(key), int):
            return int(cfg[key])
    return None


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tok_config = _read_json(folder / "tokenizer_config.json") or {}
    return bool(tok_config.get("chat_template"))


def _check_architecture(config: dict[str, Any]) -> tuple[str, str | None]:
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise LocalFolderError("unsupported_architecture", "config.json has no model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        supported = ", ".join(sorted(SUPPORTED_MODEL_TYPES))
        raise LocalFolderError(
            "unsupported_architecture",
            f"model_type {model_type!r} is not supported; supported: {supported}",
        )
    archs = config.get("architectures") or []
    causal = [a for a in archs if isinstance(a, str) and a.endswith(_CAUSAL_SUFFIXES)]
    if archs and not causal:
        raise LocalFolderError(
            "unsupported_architecture",
            f"architectures {archs} are not causal language models (e.g. LlamaForCausalLM)",
        )
    return model_type, (causal[0] if causal else None)


def inspect_local_folder(path: str | Path) -> LocalModelInfo:
    """Check that a folder holds a loadable causal LM; raise a LocalFolderError saying why not."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise LocalFolderError("not_found", f"path does not exist: {folder}")
    if not folder.is_dir():
        raise LocalFolderError("not_a_directory", f"not a directory: {folder}")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise LocalFolderError("no_config", f"no config.json in {folder}")
    config = _read_json(config_path)
    if config is None:
        raise LocalFolderError("bad_config", f"config.json is unreadable or not JSON: {folder}")
    model_type, architecture = _check_architecture(config)
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        raise LocalFolderError(
            "no_tokenizer",
            f"no tokenizer in {folder} (expected one of: {', '.join(_TOKENIZER_FILES)})",
        )
    formats = [ext for ext in ("safetensors", "bin") if any(folder.glob(f"*.{ext}"))]
    if not formats:
        raise LocalFolderError("no_weights", f"no weights (*.safetensors or *.bin) in {folder}")
    return LocalModelInfo(
        path=folder.resolve(),
        model_type=model_type,
        architecture=architecture,
        parameter_estimate=estimate_parameters(config),
        context_length=_context_length(config),
        has_chat_template=_has_chat_template(folder),
        weight_format=formats[0],
    )
