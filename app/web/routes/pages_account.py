"""The account page (password, API keys) and, for admins, the users page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import HTMLResponse

from app.errors import InvalidInput
from app.schemas.common import RowId
from app.services import admin_overview, api_keys, users
from app.services.access import require_admin
from app.web.deps import CurrentUser, SessionDep, SettingsDep, TranslatorDep
from app.web.routes.pages_projects import form_errors
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


def _account(
    request: Request, session: SessionDep, user: CurrentUser, **extra: object
) -> HTMLResponse:
    return render(
        request,
        "pages/account.html",
        status_code=int(extra.pop("status_code", 200)),  # type: ignore[call-overload]
        keys=api_keys.list_keys(session, user),
        errors=extra.pop("errors", {}),
        **extra,
    )


@router.get("/account")
def account_page(
    request: Request, session: SessionDep, user: CurrentUser, t: TranslatorDep
) -> HTMLResponse:
    return _account(request, session, user)


@router.post("/account/password")
def change_password(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
) -> HTMLResponse:
    login = getattr(request.state, "login_session", None)
    try:
        users.change_password(
            session, user, current_password, new_password,
            keep_session_id=login.id if login else None,
        )  # fmt: skip
    except InvalidInput as exc:
        return _account(request, session, user, status_code=422, errors=form_errors(exc, t))
    return _account(request, session, user, password_notice=t("account.password_changed"))


@router.post("/account/keys")
def create_key(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> HTMLResponse:
    try:
        key, row = api_keys.create(session, user, name)
    except InvalidInput as exc:
        return _account(request, session, user, status_code=422, errors=form_errors(exc, t))
    return _account(request, session, user, new_key=key, new_key_name=row.name)


@router.post("/account/keys/{key_id}/revoke")
def revoke_key(
    key_id: RowId, request: Request, session: SessionDep, user: CurrentUser, t: TranslatorDep
) -> HTMLResponse:
    row = api_keys.revoke(session, user, key_id)
    return _account(request, session, user, key_notice=t("account.key_revoked", name=row.name))


def _users_page(request: Request, session: SessionDep, **extra: object) -> HTMLResponse:
    return render(
        request,
        "pages/admin_users.html",
        status_code=int(extra.pop("status_code", 200)),  # type: ignore[call-overload]
        users=users.list_users(session),
        errors=extra.pop("errors", {}),
        form=extra.pop("form", {}),
        **extra,
    )


@router.get("/admin/users")
def users_page(
    request: Request, session: SessionDep, user: CurrentUser, t: TranslatorDep
) -> HTMLResponse:
    require_admin(user)
    return _users_page(request, session)


@router.post("/admin/users")
def create_user(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    t: TranslatorDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    is_admin: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    require_admin(user)
    try:
        created = users.create_user(session, username, password, is_admin=is_admin)
    except InvalidInput as exc:
        return _users_page(
            request, session, status_code=422, errors=form_errors(exc, t),
            form={"username": username, "is_admin": is_admin},
        )  # fmt: skip
    return _users_page(request, session, notice=t("admin.user_created", name=created.username))


@router.post("/admin/users/{user_id}/active")
def set_active(
    user_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    active: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    require_admin(user)
    changed = users.set_active(session, user, user_id, active)
    key = "admin.user_enabled" if active else "admin.user_disabled"
    return _users_page(request, session, notice=t(key, name=changed.username))


@router.get("/admin/jobs")
def jobs_page(
    request: Request, session: SessionDep, user: CurrentUser, t: TranslatorDep
) -> HTMLResponse:
    jobs = admin_overview.all_jobs(session, user)
    return render(request, "pages/admin_jobs.html", jobs=jobs, workers=admin_overview.workers(user))
