"""Export: one model version written in one format (adapter zip, merged model, GGUF), cached.

One row per (version, format): a second request for the same format reuses the file. Status
moves like a job's (`queued → running → succeeded | failed`); `verification` holds the check
that ran before the file was offered (its figures and whether it passed).
`heartbeat_at` is refreshed while it runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin
from app.models.job import JobStatus


class Export(TimestampMixin, Base):
    __tablename__ = "exports"
    __table_args__ = (
        UniqueConstraint("version_id", "format", name="uq_exports_version_format"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    format: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The file under exports/{version_id}/ (never a user-supplied name).
    file_name: Mapped[str | None] = mapped_column(String(255), default=None)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # Refreshed while the export runs; the web fails a running export whose beat stops (its
    # worker was killed or its machine lost), as it does for jobs and evaluations.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
