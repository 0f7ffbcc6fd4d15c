"""Public pages: first-run setup, login, logout, and the language switch.

These are the only pages reachable without being logged in (with health and the API docs);
app.main puts every other router behind the current-user and CSRF dependency.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from app.errors import Forbidden, InvalidInput
from app.models import User
from app.services import login_limits, login_sessions, users
from app.web.auth import same_origin
from app.web.deps import SessionDep, SettingsDep, TranslatorDep
from app.web.routes.pages_projects import form_errors
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site (never `//host` or `https://…`: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/projects"
    return target


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def start_login(
    request: Request, session: SessionDep, settings: SettingsDep, user: User, target: str
) -> Response:
    token, _ = login_sessions.start(session, user, settings.session_days)
    response = RedirectResponse(safe_next(target), status_code=303)
    response.set_cookie(
        login_sessions.COOKIE_NAME,
        token,
        max_age=settings.session_days * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get("/setup")
def setup_page(
    request: Request, session: SessionDep, settings: SettingsDep, t: TranslatorDep
) -> Response:
    if not settings.accounts:
        return RedirectResponse("/projects", status_code=303)
    if not users.needs_setup(session):
        return RedirectResponse("/login", status_code=303)
    return render(request, "pages/setup.html", errors={}, form={})


@router.post("/setup")
def setup(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    password_again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    if not same_origin(request):
        raise Forbidden("errors.cross_site_request")
    if not settings.accounts or not users.needs_setup(session):
        return RedirectResponse("/login", status_code=303)
    form = {"username": username}
    if password != password_again:
        errors = {"password_again": t("errors.passwords_differ")}
        return render(request, "pages/setup.html", status_code=422, errors=errors, form=form)
    try:
        admin = users.create_user(session, username, password, is_admin=True)
    except InvalidInput as exc:
        errors = form_errors(exc, t)
        return render(request, "pages/setup.html", status_code=422, errors=errors, form=form)
    return start_login(request, session, settings, admin, "/projects")


@router.get("/login")
def login_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    next: str = "/projects",
) -> Response:
    if not settings.accounts:
        return RedirectResponse(safe_next(next), status_code=303)
    if users.needs_setup(session):
        return RedirectResponse("/setup", status_code=303)
    return render(request, "pages/login.html", error=None, form={"next": safe_next(next)})


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/projects",
) -> Response:
    if not same_origin(request):
        raise Forbidden("errors.cross_site_request")
    if not settings.accounts:
        return RedirectResponse("/projects", status_code=303)
    form = {"username": username, "next": safe_next(next)}
    address = _client_address(request)
    if login_limits.blocked(username, address):
        minutes = login_limits.WINDOW_S // 60
        error = t("errors.login_rate_limited", minutes=minutes)
        return render(request, "pages/login.html", status_code=429, error=error, form=form)
    user = users.check_password(session, username, password)
    if user is None:
        login_limits.record_failure(username, address)
        error = t("errors.login_failed")
        return render(request, "pages/login.html", status_code=401, error=error, form=form)
    login_limits.clear_account(username)
    return start_login(request, session, settings, user, next)


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    if not same_origin(request):
        raise Forbidden("errors.cross_site_request")
    login_sessions.end(session, request.cookies.get(login_sessions.COOKIE_NAME))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(login_sessions.COOKIE_NAME, path="/")
    return response


@router.get("/lang/{language}")
def switch_language(language: str, request: Request) -> RedirectResponse:
    # Back to the page it came from, on this site only (the Referer's path, never its host).
    referer = urlsplit(request.headers.get("referer") or "")
    back = safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))
    response = RedirectResponse(back, status_code=303)
    response.set_cookie("lang", language[:16], max_age=365 * 24 * 3600, samesite="lax")
    return response
