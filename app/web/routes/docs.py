"""GET /docs (Swagger UI) and /redoc (ReDoc), served from Tunelab's own static files.

FastAPI's built-in pages load both from a CDN, which leaves a blank page on an offline or
air-gapped server. The assets are vendored under static/vendor (versions, sources and licenses
in static/vendor/README.md). The pages also send a Content-Security-Policy that allows only
this server: ReDoc's sidebar shows a logo from cdn.redoc.ly, and the browser now never asks for
it (the link text stays), so no page of Tunelab contacts another host.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

SWAGGER_UI = "/static/vendor/swagger-ui-5.35.0"
REDOC = "/static/vendor/redoc-2.5.4"

# Inline script: FastAPI's page starts Swagger UI with one; inline styles: both UIs set them
# from JavaScript; blob: workers: ReDoc's search index runs in one; data: images: both UIs'
# icons.
ONLY_THIS_SERVER = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = ONLY_THIS_SERVER
    return page


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return _offline(
        get_swagger_ui_html(
            openapi_url=request.app.openapi_url,
            title=f"{request.app.title} - Swagger UI",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            # Swagger UI would otherwise show a badge image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return _offline(
        get_redoc_html(
            openapi_url=request.app.openapi_url,
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{REDOC}/redoc.standalone.js",
            redoc_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            with_google_fonts=False,
        )
    )
