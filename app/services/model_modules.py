"""The names of a base model's adaptable linear layers, read from its weight files.

The training form offers these as LoRA target checkboxes, so a Phi model shows `qkv_proj` and
`gate_up_proj` and a GPT-2-style one `c_attn`, instead of a fixed Llama list that might match
nothing. The web never imports torch: a safetensors file starts with an 8-byte little-endian
length and a JSON header naming every tensor with its shape, which is all this needs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from app import catalog
from app.services.model_choices import loader_source
from app.storage import DataDir

# What the form offers while the model's files are not on disk yet (a built-in model before
# its first conversion): the projection names of the Llama, Qwen, Mistral and Gemma families.
COMMON_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Never offered: the output layer is tied to the embeddings in most small models and the
# trainer never adapts it (workers.training.build.EXCLUDED_MODULES).
EXCLUDED = frozenset({"lm_head"})
MAX_HEADER_BYTES = 100 * 1024 * 1024  # a corrupt length must not make us read a whole file


def model_folder(base_model: str, data_dir: Path) -> Path | None:
    """The folder holding a project's base model files, if they are on disk."""
    source = loader_source(base_model)
    try:
        entry = catalog.get_entry(source)
    except catalog.UnknownModelError:
        entry = None
    if entry is not None:
        folder = catalog.cache_folder(entry, DataDir(data_dir))
    elif base_model.startswith("hub:"):
        try:
            folder = DataDir(data_dir).hub_model(catalog.validate_hub_id(source))
        except (catalog.InvalidHubIdError, ValueError):
            return None
    else:
        folder = Path(source)
    return folder if folder.is_dir() else None


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Tensor name → {"dtype", "shape", "data_offsets"} from a safetensors file's header."""
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path.name} is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{path.name} has an implausible header length {length}")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header


def linear_module_names(folder: Path) -> list[str]:
    """Leaf names of the 2-D weights inside repeated blocks (`...layers.3.mlp.up_proj.weight`
    → `up_proj`), in the order they first appear. Embeddings, norms and the output layer are
    left out: embeddings and the output layer sit outside the numbered blocks, norms are 1-D."""
    names: dict[str, None] = {}
    for path in sorted(folder.glob("*.safetensors")):
        for key, info in read_safetensors_header(path).items():
            parts = key.split(".")
            if len(parts) < 3 or parts[-1] != "weight" or len(info.get("shape", [])) != 2:
                continue
            if not any(p.isdigit() for p in parts[:-2]) or parts[-2] in EXCLUDED:
                continue
            names.setdefault(parts[-2], None)
    return list(names)


def target_choices(base_model: str, data_dir: Path) -> tuple[list[str], bool]:
    """(names to offer as checkboxes, whether they were read from the model itself)."""
    folder = model_folder(base_model, data_dir)
    if folder is not None:
        try:
            names = linear_module_names(folder)
        except (OSError, ValueError):
            names = []
        if names:
            return names, True
    return list(COMMON_TARGETS), False
