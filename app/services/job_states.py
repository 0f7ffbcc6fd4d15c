"""Job status moves in one place, each a compare-and-set on the row.

`claim_job` (queued → running) is what makes redelivered Celery messages harmless: the second
delivery finds no queued row and exits. Every terminal move also appends a `status` event to
the job's stream, so open pages update without polling.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app import events
from app.error_codes import JobError
from app.event_types import JobStatusChanged
from app.models import Evaluation, Export, JobStatus, TrainingJob
from app.redis_client import get_redis


def now() -> datetime:
    return datetime.now(UTC)


def _publish_status(
    job_id: int,
    status: JobStatus,
    *,
    code: str | None = None,
    params: dict[str, Any] | None = None,
    message: str | None = None,
) -> None:
    """Append a `status` event; a failure carries its code and params (for the catalogs) and
    the English message."""
    try:
        event = JobStatusChanged(status=status, code=code, params=params, message=message)
        events.publish_job(get_redis(), job_id, event)
    except Exception:  # the database already holds the truth; the stream is for liveness
        pass


def compare_and_set(
    session: Session,
    table: type[TrainingJob] | type[Evaluation] | type[Export],
    row_id: int,
    from_: tuple[str, ...],
    *,
    commit: bool = True,
    **values: Any,
) -> bool:
    """Move a row whose status is one of `from_`; False when another writer moved it first."""
    result = session.execute(
        update(table)
        .where(table.id == row_id, table.status.in_(from_))
        .values(**values, updated_at=now())
    )
    if commit:
        session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _move(session: Session, job_id: int, from_: tuple[str, ...], **values: Any) -> bool:
    return compare_and_set(session, TrainingJob, job_id, from_, **values)


def claim_job(session: Session, job_id: int, worker: str) -> bool:
    moved = _move(
        session,
        job_id,
        (JobStatus.QUEUED,),
        status=JobStatus.RUNNING,
        worker=worker,
        started_at=now(),
        heartbeat_at=now(),
        error=None,
        error_code=None,
        error_params=None,
        finished_at=None,
    )
    if moved:
        _publish_status(job_id, JobStatus.RUNNING)
    return moved


def heartbeat(session: Session, job_id: int) -> bool:
    return _move(session, job_id, (JobStatus.RUNNING,), heartbeat_at=now())


def finish_job(session: Session, job_id: int, result: dict[str, Any]) -> bool:
    moved = _move(
        session,
        job_id,
        (JobStatus.RUNNING,),
        status=JobStatus.SUCCEEDED,
        result=result,
        finished_at=now(),
        stop_requested=None,
    )
    if moved:
        _publish_status(job_id, JobStatus.SUCCEEDED)
    return moved


def fail_job(
    session: Session,
    job_id: int,
    code: str,
    message: str,
    params: dict[str, Any] | None = None,
) -> bool:
    """`code` (an app.error_codes code) and `params` are what pages show, through the message
    catalogs; `message` is the English sentence for logs and the API."""
    moved = _move(
        session,
        job_id,
        (JobStatus.QUEUED, JobStatus.RUNNING),
        status=JobStatus.FAILED,
        error_code=code,
        error=message,
        error_params=params or {},
        finished_at=now(),
        stop_requested=None,
    )
    if moved:
        _publish_status(job_id, JobStatus.FAILED, message=message, code=code, params=params or {})
    return moved


def cancel_job(session: Session, job_id: int, result: dict[str, Any] | None = None) -> bool:
    moved = _move(
        session,
        job_id,
        (JobStatus.QUEUED, JobStatus.RUNNING),
        status=JobStatus.CANCELLED,
        finished_at=now(),
        stop_requested=None,
        **({"result": result} if result is not None else {}),
    )
    if moved:
        _publish_status(job_id, JobStatus.CANCELLED)
    return moved


def requeue_job(session: Session, job_id: int) -> bool:
    """A cancelled or failed job goes back to the queue (to resume from its checkpoint)."""
    moved = _move(
        session,
        job_id,
        (JobStatus.CANCELLED, JobStatus.FAILED),
        status=JobStatus.QUEUED,
        error=None,
        error_code=None,
        error_params=None,
        finished_at=None,
        stop_requested=None,
    )
    if moved:
        _publish_status(job_id, JobStatus.QUEUED)
    return moved


def reap_lost_jobs(session: Session, timeout_s: float) -> list[int]:
    """Fail running jobs whose worker stopped sending heartbeats (killed, machine lost)."""
    cutoff = now() - timedelta(seconds=timeout_s)
    stale = [
        job.id
        for job in session.query(TrainingJob).filter(
            TrainingJob.status == JobStatus.RUNNING, TrainingJob.heartbeat_at < cutoff
        )
    ]
    reaped = []
    for job_id in stale:
        message = (
            f"The worker stopped responding (no heartbeat for {int(timeout_s)} s): it was killed "
            "or its machine was lost. Resume the job to continue from its last checkpoint."
        )
        params = {"seconds": int(timeout_s)}
        if fail_job(session, job_id, JobError.WORKER_LOST, message, params):
            reaped.append(job_id)
    return reaped
