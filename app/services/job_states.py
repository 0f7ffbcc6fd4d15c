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
from app.models import JobStatus, TrainingJob
from app.redis_client import get_redis


def now() -> datetime:
    return datetime.now(UTC)


def _publish_status(job_id: int, status: str, **extra: Any) -> None:
    try:
        events.publish(get_redis(), job_id, "status", {"status": status, **extra})
    except Exception:  # the database already holds the truth; the stream is for liveness
        pass


def _move(session: Session, job_id: int, from_: tuple[str, ...], **values: Any) -> bool:
    result = session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job_id, TrainingJob.status.in_(from_))
        .values(**values, updated_at=now())
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


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


def fail_job(session: Session, job_id: int, code: str, message: str) -> bool:
    moved = _move(
        session,
        job_id,
        (JobStatus.QUEUED, JobStatus.RUNNING),
        status=JobStatus.FAILED,
        error_code=code,
        error=message,
        finished_at=now(),
        stop_requested=None,
    )
    if moved:
        _publish_status(job_id, JobStatus.FAILED, error=message, code=code)
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
        if fail_job(session, job_id, "worker_lost", message):
            reaped.append(job_id)
    return reaped
