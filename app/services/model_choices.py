"""Which base models a project may use, and how the UI describes them (no torch here).

Built-in entries come from `app.catalog`; registered local folders will join them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app import catalog
from app.errors import FieldError, InvalidInput


@dataclass(frozen=True)
class ModelChoice:
    """A catalog entry plus what the pages show about it right now."""

    entry: catalog.CatalogEntry
    status: catalog.ModelStatus
    reason: str

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def display_name(self) -> str:
        return self.entry.display_name

    @property
    def params_label(self) -> str:
        return format_parameters(self.entry.parameter_count)


def format_parameters(count: int) -> str:
    """134515008 → '134.5M'; 7_241_732_096 → '7.2B'."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.1f}M"


def default_model_id() -> str:
    return catalog.default_entry().id


def list_choices(data_dir: Path) -> list[ModelChoice]:
    return [ModelChoice(e, *catalog.model_status(e, data_dir)) for e in catalog.load_catalog()]


def find_choice(model_id: str, data_dir: Path) -> ModelChoice | None:
    return next((c for c in list_choices(data_dir) if c.id == model_id), None)


def check_base_model(model_id: str | None) -> str:
    """Return a valid base-model id: the default when none is given, else the one asked for."""
    if not model_id:
        return default_model_id()
    if model_id not in {e.id for e in catalog.load_catalog()}:
        raise InvalidInput([FieldError("base_model", "errors.unknown_model", {"model": model_id})])
    return model_id


def to_public(choice: ModelChoice) -> dict[str, object]:
    e = choice.entry
    return {
        "id": e.id,
        "display_name": e.display_name,
        "family": e.family,
        "architecture": e.architecture,
        "parameter_count": e.parameter_count,
        "parameters": choice.params_label,
        "context_length": e.context_length,
        "languages": list(e.languages),
        "licence": e.licence,
        "has_chat_template": e.has_chat_template,
        "description": e.description,
        "status": choice.status.value,
        "status_reason": choice.reason,
        "default": e.default,
    }
