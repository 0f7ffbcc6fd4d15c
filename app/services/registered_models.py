"""Registering base models beyond the catalog: local Hugging Face folders and hub ids.

Local folders are checked here without torch (`catalog.inspect_local_folder`); hub ids are
checked for form here and downloaded by a `data` worker, which reports why when it cannot.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import catalog
from app.error_codes import TaskError
from app.errors import FieldError, InvalidInput, NotFound
from app.models import RegisteredModel, User
from app.queue import TaskName, enqueue
from app.services.access import require_admin

logger = logging.getLogger(__name__)


def _existing(session: Session, owner: User, key: str) -> RegisteredModel | None:
    return session.scalar(select(RegisteredModel).where(RegisteredModel.key == key))


def register_local(session: Session, owner: User, path: str) -> RegisteredModel:
    require_admin(owner)
    if not path.strip():
        raise InvalidInput([FieldError("path", "errors.path_required")])
    try:
        info = catalog.inspect_local_folder(path.strip())
    except catalog.LocalFolderError as exc:
        raise InvalidInput(
            [
                FieldError(
                    "path", f"errors.local_folder_{exc.code}", {"detail": str(exc), "path": path}
                )
            ]
        ) from exc
    key = f"local:{info.path}"
    existing = _existing(session, owner, key)
    if existing is not None:
        return existing
    row = RegisteredModel(
        owner_id=owner.id,
        key=key,
        kind="local",
        location=str(info.path),
        display_name=info.path.name,
        model_type=info.model_type,
        architecture=info.architecture,
        parameter_count=info.parameter_estimate,
        context_length=info.context_length,
        has_chat_template=info.has_chat_template,
        status="ready",
        status_reason="",
    )
    session.add(row)
    session.commit()
    return row


def register_hub(session: Session, owner: User, hub_id: str) -> RegisteredModel:
    require_admin(owner)
    try:
        repo_id = catalog.validate_hub_id(hub_id)
    except catalog.InvalidHubIdError as exc:
        raise InvalidInput([FieldError("hub_id", "errors.bad_hub_id", {"value": hub_id})]) from exc
    key = f"hub:{repo_id}"
    row = _existing(session, owner, key)
    if row is None:
        row = RegisteredModel(
            owner_id=owner.id,
            key=key,
            kind="hub",
            location=repo_id,
            display_name=repo_id,
            status="needs_download",
            status_reason="",
        )
        session.add(row)
        session.commit()
    if row.status in ("needs_download", "failed"):
        request_download(session, row)
    return row


def request_download(session: Session, row: RegisteredModel) -> None:
    row.status, row.status_reason, row.status_params = "downloading", "", None
    session.commit()
    try:
        enqueue(TaskName.PREPARE_MODEL, row.key)
    except Exception as exc:  # Redis down: say so on the row instead of failing the request
        logger.warning("could not queue the download of %s: %s", row.key, exc)
        row.status, row.status_reason = "failed", TaskError.QUEUE_UNAVAILABLE
        session.commit()


def get_registered(session: Session, owner: User, model_id: int) -> RegisteredModel:
    row = session.scalar(select(RegisteredModel).where(RegisteredModel.id == model_id))
    if row is None:
        raise NotFound("errors.model_not_found", id=model_id)
    return row


def delete_registered(session: Session, admin: User, row: RegisteredModel) -> None:
    require_admin(admin)
    session.delete(row)
    session.commit()


def scan_model_dirs(session: Session, owner: User, dirs: list[Path]) -> list[RegisteredModel]:
    """Register every valid model folder directly inside TUNELAB_MODEL_DIRS (at start-up)."""
    found = []
    for root in dirs:
        candidates = (
            [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        )
        for folder in candidates:
            try:
                catalog.inspect_local_folder(folder)
            except catalog.LocalFolderError:
                continue
            found.append(register_local(session, owner, str(folder)))
    return found
