"""API keys: `Authorization: Bearer tl-…` acts as the key's user on /api and /v1.

Shown once when created; only the SHA-256 is stored (a key is 256 random bits, so a fast hash
is enough and lookups stay one indexed query). A revoked key is kept, marked, for the list.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import FieldError, InvalidInput, NotFound
from app.models import ApiKey, User

PREFIX = "tl-"
NAME_MAX_LENGTH = 64
# last_used_at is written at most this often per key, so a busy client does not turn every
# call into a database write.
_TOUCH_EVERY = timedelta(minutes=1)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(session: Session, user: User, name: str) -> tuple[str, ApiKey]:
    """A new key for `user`; returns (the key, shown once; its row)."""
    name = " ".join(name.split())
    if not name:
        raise InvalidInput([FieldError("name", "errors.name_required")])
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(
            [FieldError("name", "errors.name_too_long", {"max": NAME_MAX_LENGTH, "got": len(name)})]
        )
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(user_id=user.id, name=name, prefix=key[:11], key_hash=_digest(key))
    session.add(row)
    session.commit()
    return key, row


def list_keys(session: Session, user: User) -> list[ApiKey]:
    return list(
        session.scalars(
            select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())
        )
    )


def revoke(session: Session, user: User, key_id: int) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user.id))
    if row is None:
        raise NotFound("errors.api_key_not_found", id=key_id)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.commit()
    return row


def resolve(session: Session, key: str) -> User | None:
    """The active user a live key belongs to, or None."""
    if not key.startswith(PREFIX) or len(key) > 128:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == _digest(key)))
    if row is None or row.revoked_at is not None:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    now = datetime.now(UTC)
    last = row.last_used_at
    if last is None or (last if last.tzinfo else last.replace(tzinfo=UTC)) < now - _TOUCH_EVERY:
        row.last_used_at = now
        session.commit()
    return user
