"""Typed dependencies every route uses: the session, the current user, the translator.

`CurrentUser` is the one place that decides who is asking (app.web.auth): every query on
projects and what hangs off them is scoped by it. `Authorised` is what app.main puts on every
router that is not public: the user, then the CSRF check, so a new route is protected without
having to ask.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import get_sessionmaker
from app.i18n import Translator, negotiate
from app.models import Project, User
from app.services import projects as project_service
from app.web import auth


def get_session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_current_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    return auth.resolve_user(request, session, settings)


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


def get_owned_project(project_id: int, session: SessionDep, user: CurrentUser) -> Project:
    return project_service.get_project(session, user, project_id)


ProjectDep = Annotated[Project, Depends(get_owned_project)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


IsHtmx = Annotated[bool, Depends(is_htmx)]
