"""Security headers on every response: pages, API, static files, SSE streams and errors.

The Content-Security-Policy allows scripts from this server only: no inline `<script>`, no
inline event handlers (`onclick=`, htmx's `hx-on`), no `eval`. Pages keep their behaviour in
static/js. Styles may be inline: Plotly and htmx insert `<style>` elements and templates set
progress-bar widths with `style=`; an injected style cannot run code. `worker-src blob:` and
`data:` images/fonts are for the API docs (ReDoc's search worker, both UIs' icons).

A pure ASGI middleware rather than Starlette's BaseHTTPMiddleware, so streamed responses
(SSE, downloads) pass through untouched. Starlette's ServerErrorMiddleware sits outside every
user middleware, so `install` also wraps the app's catch-all error handler: a 500 page carries
the same headers.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # For browsers that predate CSP's frame-ancestors.
    "X-Frame-Options": "DENY",
}

_RAW_HEADERS = [
    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()
]
_NAMES = {name for name, _ in _RAW_HEADERS}


class SecurityHeadersMiddleware:
    """Sets SECURITY_HEADERS on every HTTP response, replacing any a route set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message["headers"] = kept + _RAW_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Add the middleware; call after the error handlers are installed (see module docstring)."""
    app.add_middleware(SecurityHeadersMiddleware)
    catch_all = app.exception_handlers.get(Exception)
    if catch_all is None:
        return

    async def with_headers(request: Request, exc: Exception) -> Response:
        result = catch_all(request, exc)
        response = await result if inspect.isawaitable(result) else result
        response.headers.update(SECURITY_HEADERS)
        return response

    app.exception_handlers[Exception] = with_headers
