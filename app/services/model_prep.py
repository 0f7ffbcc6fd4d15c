"""Starting the preparation of a base model: convert a built-in GGUF, download a hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.error_codes import catalog_key
from app.errors import FieldError, InvalidInput, NotFound
from app.i18n import Translator, placeholders
from app.models import User
from app.queue import TaskName, enqueue
from app.services import model_choices, model_progress, registered_models


def start_preparing(session: Session, owner: User, model_id: str, data_dir: Path) -> dict[str, Any]:
    choice = model_choices.find_choice(session, owner, model_id, data_dir)
    if choice is None:
        raise NotFound("errors.unknown_model", model=model_id)
    if choice.status == "ready":
        model_progress.set_progress(model_id, "done", 1.0, "")
    elif choice.kind == "builtin" and choice.status == "needs_conversion":
        model_progress.set_progress(model_id, "queued", 0.0, "")
        enqueue(TaskName.PREPARE_MODEL, model_id)
    elif choice.kind == "hub" and choice.registered_id is not None:
        model_progress.set_progress(model_id, "queued", 0.0, "")
        row = registered_models.get_registered(session, owner, choice.registered_id)
        registered_models.request_download(session, row)
    else:
        # Say why, in the reader's language: the reason's own message (e.g. the install
        # command of a missing package), with "?" for a parameter an older row lacks.
        key = catalog_key(choice.reason_code)
        if key is None:
            key, params = "errors.nothing_to_prepare", {"model": model_id}
        else:
            params = dict.fromkeys(placeholders(Translator()(key)), "?") | choice.reason_params
        raise InvalidInput([FieldError("id", key, params)])
    return model_progress.get_progress(model_id)
