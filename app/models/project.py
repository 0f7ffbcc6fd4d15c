"""Project: a base model plus the datasets, runs and versions made for one purpose."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

if TYPE_CHECKING:
    from app.models.dataset import Dataset

NAME_MAX_LENGTH = 80


class Project(TimestampMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("owner_id", "name", name="uq_projects_owner_name"),
        UniqueConstraint("owner_id", "slug", name="uq_projects_owner_slug"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    slug: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH + 8))
    description: Mapped[str] = mapped_column(Text, default="")
    base_model: Mapped[str] = mapped_column(String(1024))
    # Named chat template for models without one of their own (None: the model's, or the
    # catalog's default for it).
    chat_template: Mapped[str | None] = mapped_column(String(32), default=None)
    # Longest training example in tokens; longer rows are flagged in dataset statistics.
    max_length: Mapped[int] = mapped_column(Integer, default=1024, server_default="1024")

    datasets: Mapped[list[Dataset]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True
    )
