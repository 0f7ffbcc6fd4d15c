"""User: every project belongs to one. A single local user until accounts are switched on."""

from __future__ import annotations

from sqlalchemy import Boolean, String, false, true
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin

LOCAL_USERNAME = "local"


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    # argon2id hash (argon2-cffi's encoded form); None for the single local user and for an
    # account that has not set one yet (it cannot log in).
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    # Set per request by the current-user dependency (never stored): True when the request
    # changes something (POST, PUT, PATCH, DELETE), so project scoping shows a viewer's shared
    # projects to reads only. See app.services.access.
    writing = False
