"""TrainingJob and its metric history.

Status moves `queued → running → succeeded | failed | cancelled` (OpenAI's names) and only
through the compare-and-set functions in `app.services.job_states`. MetricPoint rows are the
durable copy of the live Redis stream: one row per optimizer step.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

if TYPE_CHECKING:
    from app.models.project import Project


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class TrainingJob(TimestampMixin, Base):
    __tablename__ = "training_jobs"
    # Checkpoints live under runs/{id}/: a reused id would resume someone else's run.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    # Lineage that survives the dataset's deletion.
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    dataset_name: Mapped[str] = mapped_column(String(255))
    # A separate validation set (another dataset of the project) instead of a split; its
    # checksum is kept for lineage like the training set's.
    val_dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True, default=None
    )
    val_dataset_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    base_model: Mapped[str] = mapped_column(String(1024))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    cloned_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="SET NULL"), default=None
    )
    # A new run that starts from an existing version's adapter (not a resume): the version's id.
    parent_version_id: Mapped[int | None] = mapped_column(Integer, default=None)

    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    # "stop" (stop now, keep the adapter) or "cancel", asked by the user while running.
    stop_requested: Mapped[str | None] = mapped_column(String(16), default=None)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    worker: Mapped[str | None] = mapped_column(String(255), default=None)
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)
    # The English sentence is for logs and the API's `message`; pages render error_code with
    # error_params through the message catalogs (`job_errors.<code>`), in the reader's language.
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # What the new-run form promised (seconds, tokens, the worker whose measured throughput it
    # used), kept so the job page can show estimate vs actual when the run ends.
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[float] = mapped_column(Float, default=0.0)
    checkpoint_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    project: Mapped[Project] = relationship()


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_metric_points_job_step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[int] = mapped_column(Integer)
    # {step, total_steps, epoch, loss, eval_loss, lr, grad_norm, tokens_per_s, elapsed_s, eta_s}
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
