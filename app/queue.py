"""The Celery client the web uses to enqueue work, and the configuration workers share.

The web never imports `workers`: it sends tasks by name (`TaskName`). Only ids travel in
messages, as JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from celery import Celery

from app.config import Settings, get_settings

logger = logging.getLogger(__name__)


class Queue(StrEnum):
    TRAIN = "train"
    INFER = "infer"
    DATA = "data"
    EXPORT = "export"
    # Evaluations run where training runs (a fresh process per task, one at a time on an
    # accelerator), never in the chat worker: minutes of full-speed generation must not stall
    # answers. `train` and `eval` together are the accelerator queues.
    EVAL = "eval"


ALL_QUEUES = tuple(q.value for q in Queue)
ACCELERATOR_QUEUES = (Queue.TRAIN.value, Queue.EVAL.value)


class TaskName(StrEnum):
    PING = "tunelab.ping"
    ANALYZE_DATASET = "data.analyze_dataset"
    PREPARE_MODEL = "data.prepare_model"
    PREVIEW_TEMPLATE = "data.preview_template"
    TRAIN = "train.run"
    GENERATE = "infer.generate"
    EVALUATE = "eval.run"
    EXPORT = "export.run"


TASK_ROUTES: dict[str, dict[str, str]] = {
    TaskName.PING: {"queue": Queue.DATA},
    TaskName.ANALYZE_DATASET: {"queue": Queue.DATA},
    TaskName.PREPARE_MODEL: {"queue": Queue.DATA},
    TaskName.PREVIEW_TEMPLATE: {"queue": Queue.DATA},
    TaskName.TRAIN: {"queue": Queue.TRAIN},
    TaskName.GENERATE: {"queue": Queue.INFER},
    TaskName.EVALUATE: {"queue": Queue.EVAL},
    TaskName.EXPORT: {"queue": Queue.EXPORT},
}


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_routes": TASK_ROUTES,
        "task_default_queue": Queue.DATA.value,
        "worker_prefetch_multiplier": 1,
        "task_acks_late": True,
        # A redelivered training message must not arrive while the first run still trains:
        # the visibility timeout outlasts the longest run we allow (one day).
        "broker_transport_options": {"visibility_timeout": 24 * 3600},
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }


def make_celery(name: str = "tunelab", settings: Settings | None = None) -> Celery:
    app = Celery(name)
    app.conf.update(celery_config(settings or get_settings()))
    return app


_client: Celery | None = None


def client() -> Celery:
    global _client
    if _client is None:
        _client = make_celery("tunelab-web")
    return _client


def enqueue(task: TaskName, *args: Any, queue: str | None = None) -> str:
    """Send `task`; `queue` overrides its route (a multi-process run's placement)."""
    options = {"queue": queue} if queue else {}
    result = client().send_task(task.value, args=list(args), **options)
    return str(result.id)


class Queued(Protocol):
    """A database row a task works on: a training job, an evaluation, an export."""

    id: int
    task_id: str | None


def enqueue_or_fail(
    session: Any,
    row: Queued,
    task: TaskName,
    fail: Callable[[Any, int, str, str], object],
    queue: str | None = None,
) -> None:
    """Send `task` for `row` (already committed as queued) and record its task id.

    When the queue (Redis) cannot be reached the row is failed at once through `fail`
    (session, id, code, message) with `queue_unavailable`: it must never sit in "queued" with no
    message on its way to a worker.
    """
    from app.error_codes import TaskError

    try:
        row.task_id = enqueue(task, row.id, queue=queue)
        session.commit()
    except Exception as exc:
        logger.warning("could not queue %s for row %s: %s", task.value, row.id, exc)
        session.rollback()
        message = "The job queue (Redis) is not reachable."
        fail(session, row.id, TaskError.QUEUE_UNAVAILABLE, message)
        session.refresh(row)
