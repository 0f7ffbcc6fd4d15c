"""Typed dependencies every route uses: the session, the current user, the translator.

`CurrentUser` is the one place that decides who is asking (app.web.auth): every query on
projects and what hangs off them is scoped by it. `Authorised` is what app.main puts on every
router that is not public: the user, then the CSRF check, so a new route is protected without
having to ask.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.i18n import Translator, negotiate
from app.models import Project, User
from app.schemas.common import RowId
from app.services import projects as project_service
from app.web import auth


async def get_session() -> AsyncIterator[Session]:
    """The request's session, closed in the event loop once the response is sent.

    No request may hold a database connection while it waits for a thread. FastAPI runs each
    sync dependency and the handler in its thread pool, one hop each, and a sync dependency's
    exit too. Under a burst (bench/bench_load.py: 50 job viewers and a page load every 20 ms)
    every pool thread was waiting for a connection while the connections were held by requests
    waiting for a thread (for their next hop, or to run `close()`): nothing moved until the
    connection pool's 30 s timeout answered 503s. So this dependency is async (its `close()`
    needs no thread), and the sync dependencies that query end their transaction before the
    next hop (`release`); the session connects again, lazily, in the handler's thread."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def release(session: Session) -> None:
    """End the transaction, handing the connection back, before FastAPI's next thread hop (see
    get_session). Loaded rows stay usable: sessions do not expire them on commit."""
    session.commit()


def get_current_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    user = auth.resolve_user(request, session, settings)
    release(session)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def authorised(request: Request, user: CurrentUser) -> User:
    """The current user, after the CSRF check (router-level dependency, see app.main)."""
    await auth.check_csrf(request)
    return user


Authorised = Depends(authorised)


def get_translator(request: Request, settings: SettingsDep) -> Translator:
    language = request.cookies.get("lang") or negotiate(
        request.headers.get("accept-language"), settings.default_language
    )
    translator = Translator(language)
    request.state.translator = translator
    return translator


TranslatorDep = Annotated[Translator, Depends(get_translator)]


def get_owned_project(project_id: RowId, session: SessionDep, user: CurrentUser) -> Project:
    project = project_service.get_project(session, user, project_id)
    release(session)
    return project


ProjectDep = Annotated[Project, Depends(get_owned_project)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


IsHtmx = Annotated[bool, Depends(is_htmx)]
