"""GET /docs (Swagger UI) and /redoc (ReDoc), served from Tunelab's own static files.

FastAPI's built-in pages load both from a CDN, which leaves a blank page on an offline or
air-gapped server. The assets are vendored under static/vendor (versions, sources and licenses
in static/vendor/README.md). Both pages live under the app's Content-Security-Policy
(app.web.security_headers), which allows only this server and no inline script: Swagger UI is
started from static/js/swagger_ui.js, and ReDoc's sidebar logo from cdn.redoc.ly is never
fetched (the link text stays), so no page of Tunelab contacts another host.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from starlette.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

SWAGGER_UI = "/static/vendor/swagger-ui-5.35.0"
REDOC = "/static/vendor/redoc-2.5.4"

SWAGGER_PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/static/js/swagger_ui.js"></script>
</body>
</html>
"""


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return HTMLResponse(
        SWAGGER_PAGE.format(
            title=escape(f"{request.app.title} - Swagger UI"),
            assets=SWAGGER_UI,
            openapi_url=escape(request.app.openapi_url or ""),
        )
    )


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{REDOC}/redoc.standalone.js",
        redoc_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        with_google_fonts=False,
    )
