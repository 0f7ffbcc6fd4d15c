"""Evaluation status moves, each a compare-and-set (like job_states), with a `status` event on
the evaluation's stream so an open page updates without polling."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import events
from app.error_codes import EvalError
from app.event_types import JobStatusChanged
from app.models import Evaluation, EvaluationExample, JobStatus
from app.redis_client import get_redis
from app.redis_keys import evaluation_stream_key
from app.services.job_states import compare_and_set, now

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def _publish(evaluation_id: int, status: JobStatus, **error: Any) -> None:
    try:
        event = JobStatusChanged(status=status, **error)
        events.publish(get_redis(), evaluation_stream_key(evaluation_id), event)
    except Exception:  # the database holds the truth; the stream is for liveness
        pass


def claim(session: Session, evaluation_id: int, worker: str) -> bool:
    moved = compare_and_set(
        session,
        Evaluation,
        evaluation_id,
        (JobStatus.QUEUED,),
        status=JobStatus.RUNNING,
        worker=worker,
        started_at=now(),
        heartbeat_at=now(),
    )
    if moved:
        _publish(evaluation_id, JobStatus.RUNNING)
    return moved


def record_progress(session: Session, evaluation_id: int, progress: dict[str, Any]) -> bool:
    return compare_and_set(
        session,
        Evaluation,
        evaluation_id,
        (JobStatus.RUNNING,),
        progress=progress,
        heartbeat_at=now(),
    )


def heartbeat(session: Session, evaluation_id: int) -> bool:
    return compare_and_set(
        session, Evaluation, evaluation_id, (JobStatus.RUNNING,), heartbeat_at=now()
    )


def cancel_requested(session: Session, evaluation_id: int) -> bool:
    return bool(
        session.scalar(select(Evaluation.cancel_requested).where(Evaluation.id == evaluation_id))
    )


def finish(
    session: Session,
    evaluation_id: int,
    *,
    results: list[dict[str, Any]],
    methods: dict[str, Any],
    examples: Sequence[EvaluationExample],
) -> bool:
    """Results and examples in one transaction with the move: an evaluation that was
    cancelled or reaped meanwhile keeps no half of them."""
    moved = compare_and_set(
        session,
        Evaluation,
        evaluation_id,
        (JobStatus.RUNNING,),
        commit=False,
        status=JobStatus.SUCCEEDED,
        results=results,
        methods=methods,
        example_count=sum(1 for e in examples if e.subset == "domain"),
        finished_at=now(),
    )
    if not moved:
        session.rollback()
        return False
    session.add_all(examples)
    session.commit()
    _publish(evaluation_id, JobStatus.SUCCEEDED)
    return True


def fail(
    session: Session,
    evaluation_id: int,
    code: str,
    message: str,
    params: dict[str, Any] | None = None,
) -> bool:
    moved = compare_and_set(
        session,
        Evaluation,
        evaluation_id,
        ACTIVE,
        status=JobStatus.FAILED,
        error_code=code,
        error=message,
        error_params=params or {},
        finished_at=now(),
    )
    if moved:
        _publish(evaluation_id, JobStatus.FAILED, code=code, params=params or {}, message=message)
    return moved


def cancel(session: Session, evaluation_id: int, *, only_queued: bool = False) -> bool:
    moved = compare_and_set(
        session,
        Evaluation,
        evaluation_id,
        (JobStatus.QUEUED,) if only_queued else ACTIVE,
        status=JobStatus.CANCELLED,
        finished_at=now(),
    )
    if moved:
        _publish(evaluation_id, JobStatus.CANCELLED)
    return moved


def reap_lost(session: Session, timeout_s: float) -> list[int]:
    """Fail running evaluations whose worker stopped sending heartbeats."""
    cutoff = now() - timedelta(seconds=timeout_s)
    stale = session.scalars(
        select(Evaluation.id).where(
            Evaluation.status == JobStatus.RUNNING, Evaluation.heartbeat_at < cutoff
        )
    ).all()
    message = f"The worker stopped responding (no heartbeat for {int(timeout_s)} s)."
    params = {"seconds": int(timeout_s)}
    return [
        evaluation_id
        for evaluation_id in stale
        if fail(session, evaluation_id, EvalError.EVAL_WORKER_LOST, message, params)
    ]
