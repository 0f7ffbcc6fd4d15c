"""`data` queue task that prepares a base model: converts a built-in GGUF into the cached
folder, or downloads a registered hub id. Progress goes to Redis for the page's progress bar;
the outcome of a download is stored on the registered model's row."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from app import catalog
from app.config import get_settings
from app.db import session_scope
from app.error_codes import error_of
from app.models import RegisteredModel
from app.queue import TaskName
from app.services.model_choices import loader_source
from app.services.model_progress import set_progress
from workers.celery_app import celery_app
from workers.ml.errors import ModelLoadError
from workers.ml.loading import resolve_source

logger = logging.getLogger(__name__)


def _update_rows(key: str, **fields: object) -> None:
    with session_scope() as session:
        for row in session.scalars(select(RegisteredModel).where(RegisteredModel.key == key)):
            for name, value in fields.items():
                setattr(row, name, value)


def _failed(model_key: str, message: str, code: str, params: dict[str, Any]) -> None:
    """The row keeps the code and params (pages render them); the English goes to the log."""
    logger.info("preparing %s failed: %s", model_key, message)
    set_progress(model_key, "failed", 0.0, message, code, params)
    _update_rows(model_key, status="failed", status_reason=code, status_params=params)


@celery_app.task(name=TaskName.PREPARE_MODEL)
def prepare_model(model_key: str) -> None:
    settings = get_settings()

    def progress(fraction: float, message: str) -> None:
        set_progress(model_key, "running", fraction, message)

    set_progress(model_key, "running", 0.0, "")
    try:
        resolved = resolve_source(loader_source(model_key), settings.data_dir, progress)
    except ModelLoadError as exc:
        _failed(model_key, str(exc), *error_of(exc))
        return
    except Exception as exc:
        logger.exception("preparing %s failed", model_key)
        _failed(model_key, f"{type(exc).__name__}: {exc}", *error_of(exc))
        raise
    if model_key.startswith("hub:"):
        info = catalog.inspect_local_folder(resolved.folder)
        _update_rows(
            model_key,
            status="ready",
            status_reason="",
            status_params=None,
            model_type=info.model_type,
            architecture=info.architecture,
            parameter_count=info.parameter_estimate,
            context_length=info.context_length,
            has_chat_template=info.has_chat_template,
        )
    set_progress(model_key, "done", 1.0, "")
