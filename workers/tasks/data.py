"""`data` queue tasks: dataset statistics and template previews with the project's tokenizer."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update

from app.config import get_settings
from app.db import session_scope, update_row
from app.error_codes import TaskError, catalog_key, error_of
from app.models import Dataset
from app.queue import TaskName
from app.services.model_choices import loader_source
from app.services.worker_results import set_result
from workers.artifacts import local_dataset
from workers.celery_app import celery_app
from workers.ml.chat_format import (
    IGNORE_INDEX,
    segments_from_example,
    tokenize_conversation,
)
from workers.ml.dataset_stats import iter_conversations, token_stats
from workers.ml.errors import ChatFormatError, ModelLoadError
from workers.ml.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)


def _set(dataset_id: int, **fields: object) -> None:
    update_row(Dataset, dataset_id, **fields)


def _stats_failed(dataset_id: int, message: str, code: str, params: dict[str, Any]) -> None:
    """stats_error keeps the code (as app.services.datasets does for queue_unavailable) and
    `stats` its params, for the page to render; the English goes to the log."""
    logger.info("statistics failed for dataset %s: %s", dataset_id, message)
    _set(dataset_id, stats_status="failed", stats_error=code, stats={"error_params": params})


def _preview_failed(request_id: str, message: str, code: str, params: dict[str, Any]) -> None:
    failure = {"error": message, "error_code": code, "error_params": params}
    set_result(request_id, {"status": "failed", **failure})


def _error_of(exc: BaseException) -> tuple[str, dict[str, Any]]:
    if isinstance(exc, ChatFormatError) and catalog_key(getattr(exc, "code", None)) is None:
        return TaskError.CHAT_FORMAT_FAILED, {"detail": str(exc)}
    return error_of(exc)


@celery_app.task(name=TaskName.ANALYZE_DATASET)
def analyze_dataset(dataset_id: int) -> None:
    settings = get_settings()
    with session_scope() as session:
        # pending → running as a compare-and-set: a second message for the same request (sent
        # again after a Redis restart, app/services/redelivery.py) finds nothing to do.
        claimed = session.execute(
            update(Dataset)
            .where(Dataset.id == dataset_id, Dataset.stats_status == "pending")
            .values(stats_status="running", stats_error=None)
        )
        dataset = session.get(Dataset, dataset_id)
        if dataset is None or not claimed.rowcount:  # type: ignore[attr-defined]
            logger.info("dataset %s is gone or not pending; nothing to analyze", dataset_id)
            return
        project = dataset.project
        source, template, max_length = project.base_model, project.chat_template, project.max_length
        duplicates = int(dataset.report.get("counts", {}).get("duplicate_row", 0))
    path = local_dataset(dataset_id)  # from the artifact store when uploaded elsewhere
    try:
        tokenizer = load_tokenizer(loader_source(source), data_dir=settings.data_dir)
        stats = token_stats(
            tokenizer, path, template=template, max_length=max_length, duplicates=duplicates
        )
    except ModelLoadError as exc:
        _stats_failed(dataset_id, str(exc), *error_of(exc))
        return
    except FileNotFoundError:
        # The dataset was deleted while this task waited in the queue.
        _stats_failed(dataset_id, "the dataset's files are gone", TaskError.DATASET_GONE, {})
        return
    except Exception as exc:
        logger.exception("statistics failed for dataset %s", dataset_id)
        _stats_failed(dataset_id, f"{type(exc).__name__}: {exc}", *error_of(exc))
        raise
    stats["tokenizer"] = source
    _set(dataset_id, stats_status="ready", stats=stats)


@celery_app.task(name=TaskName.PREVIEW_TEMPLATE)
def preview_template(request_id: str, dataset_id: int, row: int) -> None:
    """Render one normalized row through the project's tokenizer and chat template."""
    settings = get_settings()
    with session_scope() as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            _preview_failed(request_id, "dataset deleted", TaskError.DATASET_GONE, {})
            return
        project = dataset.project
        source, template, max_length = project.base_model, project.chat_template, project.max_length
    path = local_dataset(dataset_id)  # from the artifact store when uploaded elsewhere
    try:
        messages = next(m for i, m in enumerate(iter_conversations(path), start=1) if i == row)
        tokenizer = load_tokenizer(loader_source(source), data_dir=settings.data_dir)
        example = tokenize_conversation(
            tokenizer, messages, template=template, max_length=max_length
        )
        segments = segments_from_example(tokenizer, example)
    except StopIteration:
        _preview_failed(request_id, f"no row {row}", TaskError.ROW_NOT_FOUND, {"row": row})
        return
    except FileNotFoundError:  # deleted while this task waited in the queue
        _preview_failed(request_id, "the dataset's files are gone", TaskError.DATASET_GONE, {})
        return
    except (ModelLoadError, ChatFormatError) as exc:
        _preview_failed(request_id, str(exc), *_error_of(exc))
        return
    set_result(
        request_id,
        {
            "status": "ready",
            "row": row,
            "template": example.template,
            "tokens": len(example.input_ids),
            "trainable_tokens": sum(1 for label in example.labels if label != IGNORE_INDEX),
            "truncated": example.truncated,
            "max_length": max_length,
            "segments": [
                {"text": s.text, "carries_loss": s.carries_loss, "token_ids": list(s.token_ids)}
                for s in segments
            ],
        },
    )
