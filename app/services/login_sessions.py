"""Server-side login sessions: the cookie holds a random token; the database its SHA-256, the
user, the expiry and the session's CSRF token. Logging out (or a password change) deletes rows,
so a stolen cookie stops working at once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import User, UserSession

COOKIE_NAME = "tunelab_session"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def start(session: Session, user: User, days: int) -> tuple[str, UserSession]:
    """A new session for `user`; returns (cookie token, row). Expired rows are swept here."""
    now = datetime.now(UTC)
    session.execute(delete(UserSession).where(UserSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    row = UserSession(
        token_hash=_digest(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=now + timedelta(days=days),
    )
    session.add(row)
    session.commit()
    return token, row


def resolve(session: Session, token: str | None) -> tuple[User, UserSession] | None:
    """The active user and session row for a cookie token, or None."""
    if not token or len(token) > 128:
        return None
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _digest(token)))
    if row is None or _aware(row.expires_at) < datetime.now(UTC):
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    return user, row


def end(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(UserSession).where(UserSession.token_hash == _digest(token)))
        session.commit()
