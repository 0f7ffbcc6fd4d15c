"""Jinja2 environment: templates/ at the repo root, `_` bound to the request's translator."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from app.i18n import Translator
from app.paths import ROOT

templates = Jinja2Templates(directory=str(ROOT / "templates"))


def render(
    request: Request,
    name: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    translator: Translator = getattr(request.state, "translator", None) or Translator()
    context.setdefault("current_path", request.url.path)
    return templates.TemplateResponse(
        request,
        name,
        {"_": translator, "lang": translator.language, **context},
        status_code=status_code,
        headers=headers,
    )
