"""Evaluation: base and versions of a project scored on one test set, and its per-example rows.

Status moves like a training job's (`queued → running → succeeded | failed | cancelled`).
`results` holds one summary per model (`{"version": "base"|"v1", "perplexity", "bleu4", …}`),
`methods` names how each metric was computed, so a report never shows a bare number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin
from app.models.job import JobStatus


class Evaluation(TimestampMixin, Base):
    __tablename__ = "evaluations"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # The test set: a dataset of the project, or a training job's validation split.
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True, default=None
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="SET NULL"), index=True, default=None
    )
    source_name: Mapped[str] = mapped_column(String(255))
    source_sha256: Mapped[str] = mapped_column(String(64))
    # Labels in the order the report shows them: ["base", "v1", "v3"].
    versions: Mapped[list[str]] = mapped_column(JSON)
    # {max_new_tokens, temperature, top_p, seed, include_general}
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # {phase: "perplexity"|"generation"|"scoring", done, total}
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    results: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    methods: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    example_count: Mapped[int] = mapped_column(Integer, default=0)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    worker: Mapped[str | None] = mapped_column(String(255), default=None)
    # Rendered through the catalogs (`eval_errors.<code>`); `error` is the English for logs.
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class EvaluationExample(Base):
    """One test row with every model's answer and scores.

    outputs: {"base": {"answer", "perplexity", "nll", "answer_tokens", "completion_tokens",
    "hit_limit", "bleu4", "rougeL"}, "v1": {...}}
    """

    __tablename__ = "evaluation_examples"
    __table_args__ = (
        UniqueConstraint("evaluation_id", "position", name="uq_evaluation_examples_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("evaluations.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    # "domain" (the chosen test set) or "general" (the shipped general-purpose sample).
    subset: Mapped[str] = mapped_column(String(16), default="domain")
    # The conversation up to the answer being scored (what the model is asked).
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    reference: Mapped[str] = mapped_column(Text)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
