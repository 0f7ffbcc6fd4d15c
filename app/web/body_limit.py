"""A ceiling on every request body: JSON and forms up to `max_body_kb`, file uploads (multipart)
up to `max_upload_mb` plus that much, answered with 413 in the app's usual error shape.

The upload service stops a file at `max_upload_mb` with its own message (app.services.uploads);
this ceiling is what stops a body before anything parses it: Starlette would otherwise spool a
multipart body of any size to disk, and read a JSON body of any size into memory.

The limit is checked from `receive`: a declared Content-Length over it fails on the first read,
before a byte is taken, and a chunked body fails as soon as it passes it. `BodyTooLarge` is an
HTTPException so that FastAPI's body parsing re-raises it as is (it turns other errors into a
400); its own handler renders the catalog message, as JSON for the API and a page for browsers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import get_settings
from app.web.errors import error_response, translator_for


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, code: str, key: str, **params: Any) -> None:
        super().__init__(status_code=413)
        self.code, self.key, self.params = code, key, params


def _is_multipart(headers: Headers) -> bool:
    return headers.get("content-type", "").lower().startswith("multipart/form-data")


def _declared_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()  # read per request: tests and restarts may change it
        headers = Headers(scope=scope)
        if _is_multipart(headers):
            limit = settings.max_upload_bytes + settings.max_body_bytes
            error = BodyTooLarge(
                "upload_too_large", "errors.upload_too_large", limit_mb=settings.max_upload_mb
            )
        else:
            limit = settings.max_body_bytes
            error = BodyTooLarge(
                "body_too_large", "errors.body_too_large", limit_kb=settings.max_body_kb
            )
        declared = _declared_length(headers)
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            if declared is not None and declared > limit:
                raise error
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise error
            return message

        await self.app(scope, limited_receive, send)


async def handle_body_too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    t = translator_for(request)
    return error_response(request, 413, exc.code, t(exc.key, **exc.params))


def install(app: FastAPI) -> None:
    app.add_middleware(BodyLimitMiddleware)
    app.add_exception_handler(BodyTooLarge, handle_body_too_large)
