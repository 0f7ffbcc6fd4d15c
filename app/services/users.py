"""Resolving the current user. One local user until accounts are switched on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models import User
from app.models.user import LOCAL_USERNAME


def get_local_user(session: Session) -> User:
    """Return the single local user, creating it on first use (race-safe)."""
    user = session.scalar(select(User).where(User.username == LOCAL_USERNAME))
    if user is not None:
        return user
    try:
        with session.begin_nested():
            user = User(username=LOCAL_USERNAME)
            session.add(user)
        session.commit()
    except IntegrityError:
        # Another request created it between our select and insert.
        session.rollback()
        user = session.scalars(select(User).where(User.username == LOCAL_USERNAME)).one()
    return user
