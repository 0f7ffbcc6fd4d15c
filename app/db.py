"""Database engine and sessions.

`get_engine()` builds one engine per URL; `session_scope()` is for workers and the CLI,
the web gets its session through `app.web.deps.SessionDep`. No FastAPI import here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings

# One engine per resolved URL. A dict rather than lru_cache: `get_engine()` and
# `get_engine(None)` are two keys to lru_cache, so the engine session_scope used was not the one
# a forked child emptied (forget_inherited_engines), and a training child went on with its
# parent's PostgreSQL connections (psycopg: 'prepared statement "_pg3_0" already exists').
_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    """The engine for `url` (default: the settings' database), one per URL in a process."""
    url = url or get_settings().sqlalchemy_url
    engine = _engines.get(url)
    if engine is None:
        # No lock (a lock a thread holds at fork time stays held in the child): two threads
        # racing here keep the first engine stored; the other's has no connection yet.
        engine = _engines.setdefault(url, _create_engine(url))
    return engine


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets the web read while a worker writes; foreign keys are off by default.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def forget_inherited_engines() -> None:
    """In a forked child: every engine's pool starts empty, without closing the connections it
    inherited (they are the parent's, still in use there); see workers/after_fork.py."""
    for engine in list(_engines.values()):
        engine.dispose(close=False)


def reset_engines() -> None:
    """Forget every engine (tests that change the database URL in the environment)."""
    _engines.clear()


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def update_row(model: type[Any], row_id: int | None, **fields: Any) -> bool:
    """Set fields on one row in its own transaction (workers recording an outcome).
    Returns False when the row is gone (deleted meanwhile), which callers may ignore."""
    if row_id is None:
        return False
    with session_scope() as session:
        row = session.get(model, row_id)
        if row is None:
            return False
        for name, value in fields.items():
            setattr(row, name, value)
    return True
