"""Who is asking, decided once per request, and the CSRF check that goes with it.

Accounts off: the single local user, no login. Accounts on: an `Authorization: Bearer` API key
(for /api and /v1 clients), else the login-session cookie; neither is NotAuthenticated (401 for
the API, the login page for browsers). The request's method marks the user as reading or
writing, which is all project scoping needs (app.services.access).

CSRF: a state-changing request authenticated by the session cookie must carry the session's
token (`X-CSRF-Token` header, which static/js/csrf.js adds to htmx and fetch requests, or a
`csrf_token` form field). Bearer requests need none: a browser never adds that header by itself.
In every mode a request whose Origin (or Sec-Fetch-Site) says it comes from another site is
refused, which covers the local single-user mode too.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import Request
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import Forbidden, NotAuthenticated
from app.models import User
from app.services import api_keys, login_sessions
from app.services.users import get_local_user

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def resolve_user(request: Request, session: Session, settings: Settings) -> User:
    if not settings.accounts:
        user = get_local_user(session)
    else:
        token = bearer_token(request)
        if token is not None:
            found = api_keys.resolve(session, token)
            if found is None:
                raise NotAuthenticated("errors.api_key_invalid")
            user = found
            request.state.via_api_key = True
        else:
            resolved = login_sessions.resolve(
                session, request.cookies.get(login_sessions.COOKIE_NAME)
            )
            if resolved is None:
                raise NotAuthenticated("errors.login_required")
            user, request.state.login_session = resolved
    user.writing = request.method not in SAFE_METHODS
    request.state.user = user
    return user


def same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def check_csrf(request: Request) -> None:
    """Refuse a cross-site or token-less state change (see the module docstring)."""
    if request.method in SAFE_METHODS:
        return
    if not same_origin(request):
        raise Forbidden("errors.cross_site_request")
    login = getattr(request.state, "login_session", None)
    if login is None:  # accounts off, or an API key: no cookie to ride on
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, login.csrf_token):
        raise Forbidden("errors.csrf_failed")
