"""What an admin sees across the installation: every user's training jobs and the workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Project, TrainingJob, User
from app.services import health
from app.services.access import require_admin

JOBS_SHOWN = 200


@dataclass(frozen=True)
class JobLine:
    id: int
    project: str
    owner: str
    status: str
    step: int
    total_steps: int
    worker: str | None
    created_at: datetime


def all_jobs(session: Session, admin: User) -> list[JobLine]:
    """The newest jobs of every user (names and states only: their pages stay their owners')."""
    require_admin(admin)
    rows = session.execute(
        select(TrainingJob, Project.name, User.username)
        .join(Project, Project.id == TrainingJob.project_id)
        .join(User, User.id == Project.owner_id)
        .order_by(TrainingJob.id.desc())
        .limit(JOBS_SHOWN)
    )
    return [
        JobLine(
            job.id, name, owner, job.status, job.step, job.total_steps, job.worker, job.created_at
        )  # fmt: skip
        for job, name, owner in rows.tuples()
    ]


def workers(admin: User) -> list[dict[str, Any]]:
    require_admin(admin)
    try:
        return health.alive_workers()
    except Exception:  # Redis down: the page says no worker answers
        return []
