"""Users: the single local user (accounts off), and accounts (create, authenticate, passwords).

With accounts off every request is the local user. With accounts on, the first admin is made on
the setup page or by `tunelab users create NAME --admin`; if the installation already has the
local user's projects, that first admin takes them over (the local row is renamed), so turning
accounts on loses nothing.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, FieldError, InvalidInput, NotFound
from app.models import User, UserSession
from app.models.user import LOCAL_USERNAME
from app.services import passwords

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")


def get_local_user(session: Session) -> User:
    """Return the single local user, creating it on first use (race-safe)."""
    user = session.scalar(select(User).where(User.username == LOCAL_USERNAME))
    if user is not None:
        if not user.is_admin:  # a row from before accounts existed (0009 added the column)
            user.is_admin = True
            session.commit()
        return user
    try:
        with session.begin_nested():
            user = User(username=LOCAL_USERNAME, is_admin=True)
            session.add(user)
        session.commit()
    except IntegrityError:
        # Another request created it between our select and insert.
        session.rollback()
        user = session.scalars(select(User).where(User.username == LOCAL_USERNAME)).one()
    return user


def needs_setup(session: Session) -> bool:
    """True while no admin can log in (accounts on, nobody set up yet)."""
    admin = session.scalar(
        select(User.id).where(
            User.is_admin.is_(True), User.password_hash.is_not(None), User.is_active.is_(True)
        )
    )
    return admin is None


def _check(username: str, password: str) -> list[FieldError]:
    errors = []
    if not USERNAME_PATTERN.match(username) or username == LOCAL_USERNAME:
        errors.append(FieldError("username", "errors.username_invalid"))
    if len(password) < passwords.MIN_LENGTH:
        errors.append(
            FieldError("password", "errors.password_too_short", {"min": passwords.MIN_LENGTH})
        )
    elif len(password) > passwords.MAX_LENGTH:
        errors.append(
            FieldError("password", "errors.password_too_long", {"max": passwords.MAX_LENGTH})
        )
    return errors


def create_user(session: Session, username: str, password: str, *, is_admin: bool) -> User:
    """A new account. The first admin takes over the local user's row (and its projects)."""
    username = username.strip()
    errors = _check(username, password)
    if errors:
        raise InvalidInput(errors)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise InvalidInput([FieldError("username", "errors.username_taken", {"name": username})])
    user = None
    if is_admin and needs_setup(session):
        user = session.scalar(select(User).where(User.username == LOCAL_USERNAME))
    if user is None:
        user = User(username=username)
        session.add(user)
    user.username = username
    user.password_hash = passwords.hash_password(password)
    user.is_admin = is_admin
    user.is_active = True
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise InvalidInput(
            [FieldError("username", "errors.username_taken", {"name": username})]
        ) from exc
    return user


def find_active(session: Session, username: str) -> User | None:
    return session.scalar(
        select(User).where(User.username == username.strip(), User.is_active.is_(True))
    )


def check_password(session: Session, username: str, password: str) -> User | None:
    """The active account if the password is right, else None (same cost either way)."""
    user = find_active(session, username)
    if not passwords.verify_password(user.password_hash if user else None, password):
        return None
    assert user is not None and user.password_hash is not None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
        session.commit()
    return user


def change_password(
    session: Session, user: User, current: str, new: str, *, keep_session_id: int | None
) -> None:
    """Change a password (the current one must be right); every other login session ends."""
    if not passwords.verify_password(user.password_hash, current):
        raise InvalidInput([FieldError("current_password", "errors.password_wrong")])
    errors = [e for e in _check(user.username, new) if e.field == "password"]
    if errors:
        raise InvalidInput([FieldError("new_password", e.key, e.params) for e in errors])
    user.password_hash = passwords.hash_password(new)
    for row in session.scalars(select(UserSession).where(UserSession.user_id == user.id)):
        if row.id != keep_session_id:
            session.delete(row)
    session.commit()


def set_password(session: Session, username: str, password: str) -> User:
    """An admin's reset (the CLI): a new password, every login session of the user ended."""
    user = session.scalar(select(User).where(User.username == username.strip()))
    if user is None or user.password_hash is None:
        raise InvalidInput([FieldError("username", "errors.user_unknown", {"name": username})])
    errors = [e for e in _check(user.username, password) if e.field == "password"]
    if errors:
        raise InvalidInput(errors)
    user.password_hash = passwords.hash_password(password)
    for row in session.scalars(select(UserSession).where(UserSession.user_id == user.id)):
        session.delete(row)
    session.commit()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).where(User.password_hash.is_not(None))))


def set_active(session: Session, admin: User, user_id: int, active: bool) -> User:
    """Admins switch accounts off (their sessions end) and on; never their own."""
    user = session.get(User, user_id)
    if user is None or user.password_hash is None:
        raise NotFound("errors.user_not_found", id=user_id)
    if user.id == admin.id:
        raise Conflict("errors.cannot_deactivate_self")
    user.is_active = active
    if not active:
        for row in session.scalars(select(UserSession).where(UserSession.user_id == user.id)):
            session.delete(row)
    session.commit()
    return user
