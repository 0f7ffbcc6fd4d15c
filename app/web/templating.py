"""Jinja2 environment: templates/ at the repo root, `_` bound to the request's translator.

`error_text(code, params, fallback)` renders a stored error code (app.error_codes: jobs,
models, worker results) in the request's language; for a code it does not know (rows from
before codes) it shows `fallback`, the stored English sentence.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.responses import HTMLResponse

from app.config import get_settings
from app.error_codes import describe
from app.i18n import Translator
from app.paths import ROOT

templates = Jinja2Templates(directory=str(ROOT / "templates"))


@pass_context
def error_text(
    context: Context,
    code: str | None,
    params: dict[str, Any] | None = None,
    fallback: str | None = None,
) -> str:
    return describe(context.get("_") or Translator(), code, params, fallback)


templates.env.globals["error_text"] = error_text


def render(
    request: Request,
    name: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    translator: Translator = getattr(request.state, "translator", None) or Translator()
    context.setdefault("current_path", request.url.path)
    # Who is logged in (accounts on) and the token forms and htmx requests send back.
    login = getattr(request.state, "login_session", None)
    context.setdefault("current_user", getattr(request.state, "user", None))
    context.setdefault("csrf_token", login.csrf_token if login else "")
    context.setdefault("accounts_on", get_settings().accounts)
    return templates.TemplateResponse(
        request,
        name,
        {"_": translator, "lang": translator.language, **context},
        status_code=status_code,
        headers=headers,
    )
