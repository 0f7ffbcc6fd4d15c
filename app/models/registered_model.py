"""A base model a user registered beyond the built-in catalog: a local folder or a hub id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class RegisteredModel(TimestampMixin, Base):
    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("owner_id", "key", name="uq_registered_models_owner_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # What projects store in `base_model`: "local:/abs/path" or "hub:org/name".
    key: Mapped[str] = mapped_column(String(1024))
    kind: Mapped[str] = mapped_column(String(16))  # local | hub
    location: Mapped[str] = mapped_column(String(1024))  # folder path or hub repo id
    display_name: Mapped[str] = mapped_column(String(255))
    model_type: Mapped[str | None] = mapped_column(String(64), default=None)
    architecture: Mapped[str | None] = mapped_column(String(128), default=None)
    parameter_count: Mapped[int | None] = mapped_column(BigInteger, default=None)
    context_length: Mapped[int | None] = mapped_column(Integer, default=None)
    has_chat_template: Mapped[bool] = mapped_column(Boolean, default=False)
    # ready | needs_download | downloading | failed
    status: Mapped[str] = mapped_column(String(32))
    # A code rendered through the catalogs (`model_status.<code>`) with status_params; the
    # English detail (e.g. an exception's text) travels in the params for logs.
    status_reason: Mapped[str] = mapped_column(String(2000), default="")
    status_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
