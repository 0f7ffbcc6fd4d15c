"""Maps errors to responses in one place: the JSON error shape for the API, pages for browsers.

API shape: `{"error": {"code", "message", "details"}}`; for invalid input `details` is a list
of `{"field", "message"}`. Browsers get a friendly page in their language.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, RedirectResponse, Response

from app.errors import AppError, FieldError, InvalidInput, NotAuthenticated
from app.i18n import Translator, negotiate
from app.web.templating import render

logger = logging.getLogger(__name__)


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
    return error_response(
        request, exc.status_code, f"http_{exc.status_code}", t(key, status=exc.status_code)
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    t = translator_for(request)
    return error_response(request, 500, "internal_error", t("errors.internal"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(Exception, handle_unexpected)
