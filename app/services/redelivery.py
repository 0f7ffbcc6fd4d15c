"""Which database rows still wait for a message in each queue, so a lost queue can be refilled.

Redis keeps nothing on disk: when it restarts (or is replaced) every message waiting in it is
gone, while the rows the web committed before sending them still say `queued`. The database is
the record, so these rows are what to send again (workers/reconciler.py does, once per Redis
lifetime). A row sent twice runs once: each task starts with a compare-and-set claim from
`queued` (job_states.claim_job, evaluation_states.claim, exports.claim, and the dataset
statistics' pending → running), and a second message finds nothing to claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from app.models import Dataset, Evaluation, Export, JobStatus, TrainingJob
from app.queue import Queue, TaskName
from app.services import placement
from app.services.health import alive_workers


def _training_queue(job: TrainingJob) -> str | None:
    """Where the web sends a new run of this size (app.services.placement): `train`, or the
    queue of the workers with enough slots for a multi-process run; None while no alive worker
    has them (a restarted Redis has no heartbeats until the workers' next beat)."""
    processes = int((job.config or {}).get("processes") or 1)
    if processes <= 1:
        return Queue.TRAIN.value
    return placement.place(processes, alive_workers()).queue


@dataclass(frozen=True)
class Waiting:
    """Where one queue's rows are, which of them no worker has taken yet, the task that takes
    one, and (for training) which queue a row goes to."""

    task: TaskName
    table: Any
    condition: ColumnElement[bool]
    route: Callable[[Any], str | None] | None = None

    def targets(self, session: Session, queue: str) -> list[tuple[int, str | None]]:
        """(row id, queue to send it to, or None when no worker could take it now), oldest
        first: the order they were queued in."""
        rows = session.scalars(select(self.table).where(self.condition).order_by(self.table.id))
        return [(row.id, self.route(row) if self.route else queue) for row in rows]


WAITING: dict[str, Waiting] = {
    Queue.TRAIN.value: Waiting(
        TaskName.TRAIN, TrainingJob, TrainingJob.status == JobStatus.QUEUED, _training_queue
    ),
    Queue.EVAL.value: Waiting(TaskName.EVALUATE, Evaluation, Evaluation.status == JobStatus.QUEUED),
    Queue.EXPORT.value: Waiting(TaskName.EXPORT, Export, Export.status == JobStatus.QUEUED),
    Queue.DATA.value: Waiting(TaskName.ANALYZE_DATASET, Dataset, Dataset.stats_status == "pending"),
}


def waiting(session: Session, queue: str) -> list[tuple[TaskName, int, str | None]]:
    """(task, row id, target queue or None) for each row still queued for `queue`; none for a
    queue whose messages carry no row (`infer`: a chat request lives in Redis, lost with it)."""
    spec = WAITING.get(queue)
    if spec is None:
        return []
    return [(spec.task, row_id, target) for row_id, target in spec.targets(session, queue)]
