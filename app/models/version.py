"""ModelVersion: a finished training run's adapter (v1, v2 … per project) with its lineage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class ModelVersion(TimestampMixin, Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("project_id", "version", name="uq_model_versions_project_version"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_jobs.id", ondelete="SET NULL"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    adapter_path: Mapped[str] = mapped_column(String(1024))
    base_model: Mapped[str] = mapped_column(String(1024))
    # Everything needed to rerun: the frozen config (seed inside), the dataset's checksum,
    # library versions, and the final metrics.
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    dataset_name: Mapped[str] = mapped_column(String(255))
    libraries: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    stopped_early: Mapped[bool] = mapped_column(default=False)
    # The version this one continued from ("continue from v2"): lineage v1 -> v2 -> v3. A plain
    # id (no FOREIGN KEY, added in place by migration 0007); a deleted parent reads as gone.
    parent_id: Mapped[int | None] = mapped_column(Integer, default=None)
