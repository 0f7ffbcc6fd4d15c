"""Which base models a user may pick, and how pages and the API describe them (no torch here).

Two sources: the built-in catalog (`app.catalog`) and the models a user registered (local
folders and hub ids, `app.services.registered_models`). A project stores the model's `id`:
a catalog id, `local:/abs/path` or `hub:org/name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import catalog
from app.errors import FieldError, InvalidInput
from app.models import RegisteredModel, User


@dataclass(frozen=True)
class ModelChoice:
    id: str
    kind: str  # builtin | local | hub
    display_name: str
    family: str
    architecture: str
    parameter_count: int | None
    context_length: int | None
    languages: tuple[str, ...]
    licence: str
    has_chat_template: bool
    default_chat_template: str | None
    description: str
    status: str  # ready | needs_conversion | needs_download | downloading | failed | missing
    reason: str
    default: bool = False
    registered_id: int | None = None

    @property
    def params_label(self) -> str:
        return format_parameters(self.parameter_count)


def format_parameters(count: int | None) -> str:
    """134515008 → '134.5M'; 7_241_732_096 → '7.2B'; unknown → '?'."""
    if not count:
        return "?"
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    return f"{count / 1e6:.1f}M"


def _from_entry(entry: catalog.CatalogEntry, data_dir: Path) -> ModelChoice:
    status, reason = catalog.model_status(entry, data_dir)
    return ModelChoice(
        id=entry.id,
        kind="builtin",
        display_name=entry.display_name,
        family=entry.family,
        architecture=entry.architecture,
        parameter_count=entry.parameter_count,
        context_length=entry.context_length,
        languages=entry.languages,
        licence=entry.licence,
        has_chat_template=entry.has_chat_template,
        default_chat_template=entry.default_chat_template,
        description=entry.description,
        status=status.value,
        reason=reason,
        default=entry.default,
    )


def _from_registered(row: RegisteredModel) -> ModelChoice:
    return ModelChoice(
        id=row.key,
        kind=row.kind,
        display_name=row.display_name,
        family=row.model_type or "",
        architecture=row.architecture or "",
        parameter_count=row.parameter_count,
        context_length=row.context_length,
        languages=(),
        licence="",
        has_chat_template=row.has_chat_template,
        default_chat_template=None if row.has_chat_template else "chatml",
        description=row.location,
        status=row.status,
        reason=row.status_reason,
        registered_id=row.id,
    )


def default_model_id() -> str:
    return catalog.default_entry().id


def list_choices(session: Session, owner: User, data_dir: Path) -> list[ModelChoice]:
    builtin = [_from_entry(e, data_dir) for e in catalog.load_catalog()]
    rows = session.scalars(
        select(RegisteredModel)
        .where(RegisteredModel.owner_id == owner.id)
        .order_by(RegisteredModel.id)
    )
    return builtin + [_from_registered(r) for r in rows]


def find_choice(session: Session, owner: User, model_id: str, data_dir: Path) -> ModelChoice | None:
    return next((c for c in list_choices(session, owner, data_dir) if c.id == model_id), None)


def check_base_model(session: Session, owner: User, model_id: str | None) -> str:
    """Return a valid base-model id: the default when none is given, else the one asked for."""
    if not model_id:
        return default_model_id()
    if model_id in {e.id for e in catalog.load_catalog()}:
        return model_id
    registered = session.scalar(
        select(RegisteredModel.id).where(
            RegisteredModel.owner_id == owner.id, RegisteredModel.key == model_id
        )
    )
    if registered is None:
        raise InvalidInput([FieldError("base_model", "errors.unknown_model", {"model": model_id})])
    return model_id


def loader_source(base_model: str) -> str:
    """What the worker's loader takes for a project's `base_model`: a built-in id, a folder
    path (`local:/path`) or a hub id (`hub:org/name`)."""
    for prefix in ("local:", "hub:"):
        if base_model.startswith(prefix):
            return base_model[len(prefix) :]
    return base_model


def to_public(choice: ModelChoice) -> dict[str, object]:
    return {
        "id": choice.id,
        "kind": choice.kind,
        "display_name": choice.display_name,
        "family": choice.family,
        "architecture": choice.architecture,
        "parameter_count": choice.parameter_count,
        "parameters": choice.params_label,
        "context_length": choice.context_length,
        "languages": list(choice.languages),
        "licence": choice.licence,
        "has_chat_template": choice.has_chat_template,
        "default_chat_template": choice.default_chat_template,
        "description": choice.description,
        "status": choice.status,
        "status_reason": choice.reason,
        "default": choice.default,
        "registered_id": choice.registered_id,
    }
