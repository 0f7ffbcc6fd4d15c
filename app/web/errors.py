"""Maps errors to responses in one place: the JSON error shape for the API, pages for browsers.

API shape: `{"error": {"code", "message", "details"}}`; for invalid input `details` is a list
of `{"field", "message"}`. Browsers get a friendly page in their language. `ERROR_RESPONSES`
declares that shape in the OpenAPI document for the statuses the API answers with.

A database that does not answer (down, restarting, unreachable, out of connections) is a 503
with a message, never a 500 with a stack trace: the request can succeed once it is back. A value
the database refuses to store (PostgreSQL takes no NUL character in text) is the client's: 422.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response

from app.errors import AppError, FieldError, InvalidInput, NotAuthenticated
from app.i18n import Translator, negotiate
from app.web.templating import render

logger = logging.getLogger(__name__)

# PEP 249's errors for a database that cannot serve the request now (refused or dropped
# connection, server shutting down, lock timeout), and the pool's wait for a free connection.
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
DATABASE_RETRY_AFTER_S = 5


class FieldProblem(BaseModel):
    field: str = Field(description="The input field, dotted for nested JSON (`config.rank`).")
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable and machine-readable: `not_found`, `invalid_input`…")
    message: str = Field(description="For people, in the reader's language (Accept-Language).")
    details: list[FieldProblem] | dict[str, Any] | None = Field(
        default=None,
        description="Invalid input: each field and what is wrong with it. A rejected dataset "
        "upload: its report (`upload_token`, row counts). Otherwise null.",
    )


class ErrorBody(BaseModel):
    error: ErrorInfo


def _declared(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Every /api and /v1 route may answer these (app.main adds them to each router), so generated
# clients know their body. 422 replaces FastAPI's own validation model, which the app never sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _declared("Bad request: a body that cannot be parsed"),
    401: _declared("Not authenticated (accounts on): no or a wrong API key or login session"),
    403: _declared("Not allowed: admin only, a viewer changing something, or a failed CSRF check"),
    404: _declared("Not found, or not yours"),
    409: _declared("Conflict with the current state (not finished yet, already exists...)"),
    413: _declared("The body is over the size limit"),
    422: _declared("Invalid input: `details` names each field"),
    503: _declared("A service is unavailable: the database, Redis, or no worker for the queue"),
}


def wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/v1/", "/healthz")):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def translator_for(request: Request) -> Translator:
    existing = getattr(request.state, "translator", None)
    if existing is not None:
        return existing
    language = request.cookies.get("lang") or negotiate(request.headers.get("accept-language"))
    return Translator(language)


def field_details(errors: list[FieldError], t: Translator) -> list[dict[str, str]]:
    return [{"field": e.field, "message": t(e.key, **e.params)} for e in errors]


def error_response(
    request: Request, status: int, code: str, message: str, details: object = None
) -> Response:
    if wants_json(request):
        body = {"error": {"code": code, "message": message, "details": details}}
        return JSONResponse(body, status_code=status)
    request.state.translator = translator_for(request)
    return render(
        request,
        "pages/error.html",
        status_code=status,
        status=status,
        message=message,
        details=details if isinstance(details, list) else None,
    )


def login_redirect(request: Request) -> Response:
    """Browsers that are not logged in go to the login page, and come back afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?{urlencode({'next': target})}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def handle_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    t = translator_for(request)
    if isinstance(exc, NotAuthenticated):
        if not wants_json(request):
            return login_redirect(request)
        response = error_response(request, 401, exc.code, t(exc.key, **exc.params))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    details = field_details(exc.errors, t) if isinstance(exc, InvalidInput) else None
    return error_response(request, exc.status_code, exc.code, t(exc.key, **exc.params), details)


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or "body"


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    t = translator_for(request)
    details = [
        {"field": _field_path(tuple(err.get("loc", ()))), "message": err.get("msg", "")}
        for err in exc.errors()
    ]
    return error_response(
        request, 422, "invalid_input", t("errors.invalid_input", count=len(details)), details
    )


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    t = translator_for(request)
    key = {404: "errors.page_not_found", 405: "errors.method_not_allowed"}.get(
        exc.status_code, "errors.http_error"
    )
    response = error_response(
        request, exc.status_code, f"http_{exc.status_code}", t(key, status=exc.status_code)
    )
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = allowed_methods(request)
    return response


def allowed_methods(request: Request) -> str:
    """Every method the path takes, for a 405's `Allow` (RFC 9110). Starlette names only those
    of the first route whose path matched, and GET and POST /api/projects are two routes."""
    methods: set[str] = set()
    for pattern, route_methods in request.app.state.route_methods:
        if pattern.match(request.url.path):
            methods |= route_methods
    return ", ".join(sorted(methods))


async def handle_unstorable_value(request: Request, exc: Exception) -> Response:
    logger.warning(
        "value the database cannot store on %s %s: %s",
        request.method,
        request.url.path,
        str(getattr(exc, "orig", None) or exc).strip(),
    )
    t = translator_for(request)
    return error_response(request, 422, "unstorable_value", t("errors.unstorable_value"))


async def handle_database_unavailable(request: Request, exc: Exception) -> Response:
    # One line, not a stack trace: while the database is away every request would log one.
    logger.warning(
        "database unavailable on %s %s: %s",
        request.method,
        request.url.path,
        str(getattr(exc, "orig", None) or exc).strip(),
    )
    t = translator_for(request)
    response = error_response(
        request, 503, "database_unavailable", t("errors.database_unavailable")
    )
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    t = translator_for(request)
    return error_response(request, 500, "internal_error", t("errors.internal"))


def install_error_handlers(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """`routers`: every router the app includes, for the `Allow` header of a 405."""
    app.state.route_methods = [
        (route.path_regex, route.methods)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, handle_database_unavailable)
    app.add_exception_handler(sa_exc.DataError, handle_unstorable_value)
    app.add_exception_handler(Exception, handle_unexpected)
