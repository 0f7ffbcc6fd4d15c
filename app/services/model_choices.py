"""Which base models a user may pick, and how pages and the API describe them (no torch here).

Two sources: the built-in catalog (`app.catalog`) and the models a user registered (local
folders and hub ids, `app.services.registered_models`). A project stores the model's `id`:
a catalog id, `local:/abs/path` or `hub:org/name`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import catalog
from app.error_codes import ModelError, ModelNote, catalog_key, english, install_command
from app.errors import FieldError, InvalidInput
from app.models import RegisteredModel, User
from app.storage import DataDir


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
    reason: str  # in English (logs, the API); pages render reason_code with reason_params
    reason_code: str | None = None  # an app.error_codes code
    reason_params: dict[str, Any] = field(default_factory=dict)
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


def _builtin_reason(
    entry: catalog.CatalogEntry, status: catalog.ModelStatus, sentence: str, data_dir: DataDir
) -> tuple[str, dict[str, Any]]:
    """The code and params of app.catalog.model_status's English sentence."""
    src = entry.source
    if status is catalog.ModelStatus.READY:
        return ModelNote.CACHED, {"path": str(catalog.cache_folder(entry, data_dir))}
    if status is catalog.ModelStatus.NEEDS_DOWNLOAD:
        return ModelNote.DOWNLOADS_ON_FIRST_USE, {"repo": src.repo_id or ""}
    if status is catalog.ModelStatus.NEEDS_CONVERSION:
        if src.kind == "gguf_assembled":
            return ModelNote.ASSEMBLES_ON_FIRST_LOAD, {}
        return ModelNote.CONVERTS_ON_FIRST_LOAD, {}
    # Missing: the catalog gives the install hint when the package is absent, another
    # sentence when a package lacks its file or the source kind is unknown.
    if sentence == entry.install_hint:
        return ModelError.NOT_INSTALLED, {"command": install_command(entry.install_hint)}
    if src.kind == "gguf_package":
        return ModelError.PACKAGE_INCOMPLETE, {"package": src.package, "file": src.gguf_file}
    return ModelError.UNKNOWN_SOURCE_KIND, {"kind": src.kind}


def _from_entry(entry: catalog.CatalogEntry, data_dir: Path) -> ModelChoice:
    status, reason = catalog.model_status(entry, DataDir(data_dir))
    code, params = _builtin_reason(entry, status, reason, DataDir(data_dir))
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
        reason_code=code,
        reason_params=params,
        default=entry.default,
    )


def _from_registered(row: RegisteredModel) -> ModelChoice:
    # status_reason holds a code; rows failed before codes existed hold an English sentence.
    code = row.status_reason if catalog_key(row.status_reason) else None
    params = row.status_params or {}
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
        reason=english(code, params) if code else row.status_reason,
        reason_code=code,
        reason_params=params,
        registered_id=row.id,
    )


def default_model_id() -> str:
    return catalog.default_entry().id


def list_choices(session: Session, owner: User, data_dir: Path) -> list[ModelChoice]:
    builtin = [_from_entry(e, data_dir) for e in catalog.load_catalog()]
    # Registered models belong to the installation (admins register them) and every user
    # picks from them; `owner` stays in the signature for the scoping rule all services follow.
    rows = session.scalars(select(RegisteredModel).order_by(RegisteredModel.id))
    return builtin + [_from_registered(r) for r in rows]


def find_choice(session: Session, owner: User, model_id: str, data_dir: Path) -> ModelChoice | None:
    return next((c for c in list_choices(session, owner, data_dir) if c.id == model_id), None)


def check_base_model(session: Session, owner: User, model_id: str | None) -> str:
    """Return a valid base-model id: the default when none is given, else the one asked for."""
    if not model_id:
        return default_model_id()
    if model_id in {e.id for e in catalog.load_catalog()}:
        return model_id
    registered = session.scalar(select(RegisteredModel.id).where(RegisteredModel.key == model_id))
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
        "status_reason_code": choice.reason_code,
        "status_params": choice.reason_params,
        "default": choice.default,
        "registered_id": choice.registered_id,
    }
