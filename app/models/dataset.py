"""Dataset: one uploaded file of a project, validated, normalized and checksummed.

Files live under `{data_dir}/datasets/{id}/`: `original.<ext>`, `normalized.jsonl` (one
`{"messages": [...]}` per line: what training reads) and `dropped.jsonl` (rows the user chose
to leave out, downloadable).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

if TYPE_CHECKING:
    from app.models.project import Project


class Dataset(TimestampMixin, Base):
    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_datasets_project_sha256"),
        # Files live under datasets/{id}/: an id must never be handed out twice.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    original_filename: Mapped[str] = mapped_column(String(255))
    container: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(Integer)
    dropped_count: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    # Share of rows held out for validation during training (0 = no split).
    val_percent: Mapped[int] = mapped_column(Integer, default=10)
    # The validation report as JSON (issues capped at 1000, counts complete).
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Token statistics from the `data` worker: pending | running | ready | failed.
    stats_status: Mapped[str] = mapped_column(String(16), default="pending")
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    stats_error: Mapped[str | None] = mapped_column(String(2000), default=None)

    project: Mapped[Project] = relationship(back_populates="datasets")
