"""Every response carries the security headers, whatever made it: a page, the JSON API, the
OpenAI-compatible API, a static file, the API docs, a 404, a 422 and an unexpected 500. The
policy allows no inline script, and no template holds one (inline handlers and htmx's hx-on
included), so the policy breaks nothing; tests/browser/test_csp_browser.py checks the pages in
a real browser."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.main import create_app
from app.paths import ROOT
from app.web.security_headers import SECURITY_HEADERS


def _directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_the_policy_allows_no_inline_script_and_no_framing() -> None:
    csp = _directives(SECURITY_HEADERS["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"]
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert not any("unsafe" in v for k, vs in csp.items() if k != "style-src" for v in vs)
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["X-Frame-Options"] == "DENY"
    assert SECURITY_HEADERS["Referrer-Policy"] == "same-origin"


def _assert_secured(response) -> None:  # type: ignore[no-untyped-def]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)


def test_every_kind_of_response_carries_the_headers(client) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Headers"})
    assert project.status_code == 201
    _assert_secured(project)
    pid = project.json()["id"]
    responses = {
        "page": client.get("/projects"),
        "project page": client.get(f"/projects/{pid}"),
        "api": client.get("/api/projects"),
        "v1": client.get("/v1/models"),
        "static": client.get("/static/js/chat.js"),
        "vendor": client.get("/static/vendor/htmx-2.0.8.min.js"),
        "openapi": client.get("/openapi.json"),
        "swagger": client.get("/docs"),
        "redoc": client.get("/redoc"),
        "health": client.get("/healthz"),
        "page 404": client.get("/projects/999999"),
        "api 404": client.get("/api/projects/999999"),
        "static 404": client.get("/static/js/nothing.js"),
        "api 422": client.post("/api/projects", json={"name": ""}),
        "405": client.delete("/projects"),
    }
    assert responses["page 404"].status_code == 404
    assert responses["api 422"].status_code == 422
    assert responses["405"].status_code == 405
    for kind, response in responses.items():
        assert response.status_code < 500, kind
        _assert_secured(response)


def test_an_unexpected_error_carries_them_too(platform_env) -> None:  # type: ignore[no-untyped-def]
    """ServerErrorMiddleware answers a crash outside every user middleware."""
    app = create_app()

    def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/api/boom", boom)
    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/api/boom", "/boom"):
            response = client.get(path)
            assert response.status_code == 500
            _assert_secured(response)
        assert client.get("/api/boom").json()["error"]["code"] == "internal_error"


def test_the_docs_pages_start_without_inline_script(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/docs", "/redoc"):
        html = client.get(path).text
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
        assert scripts, path
        for attributes, body in scripts:
            assert "src=" in attributes and not body.strip(), (path, attributes)


# What a strict policy blocks, as it would be written in a template.
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"""\s(on[a-z]+|hx-on[:\w-]*)\s*=""", re.I)
JS_URL = re.compile(r"""(href|src|action|formaction)\s*=\s*["']?\s*javascript:""", re.I)
JS_VALUES = re.compile(r"""hx-(vals|vars)\s*=\s*["']\s*js:""", re.I)


def test_no_template_holds_inline_script() -> None:
    problems = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        for pattern in (INLINE_SCRIPT, INLINE_HANDLER, JS_URL, JS_VALUES):
            problems += [
                f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in pattern.finditer(text)
            ]
    assert not problems, problems


def test_the_lint_finds_what_it_looks_for() -> None:
    """The patterns above do match what they forbid (so an empty result means something)."""
    assert INLINE_SCRIPT.search("<script>alert(1)</script>")
    assert not INLINE_SCRIPT.search('<script src="/static/js/chat.js" defer></script>')
    assert INLINE_HANDLER.search('<form hx-on::after-request="this.reset()">')
    assert INLINE_HANDLER.search('<img src=x onerror="go()">')
    assert not INLINE_HANDLER.search('<div data-onerror="x" hx-confirm="sure?">')
    assert JS_URL.search('<a href="javascript:go()">')
    assert JS_VALUES.search("<div hx-vals='js:{a: 1}'>")


def test_the_deployment_doc_states_the_policy_and_the_limits() -> None:
    from app.models.project import NAME_MAX_LENGTH
    from app.services import text_limits
    from app.services.generation import GenParams

    doc = " ".join((ROOT / "docs" / "deployment.md").read_text(encoding="utf-8").split())
    assert f"`{SECURITY_HEADERS['Content-Security-Policy']}`" in doc
    for name, value in SECURITY_HEADERS.items():
        assert f"| `{name}` | `{value}` |" in doc, name
    limits = {
        "a chat message": text_limits.PROMPT_MAX_CHARS,
        "Messages per request": text_limits.MESSAGES_MAX,
        "a system prompt": text_limits.SYSTEM_PROMPT_MAX_CHARS,
        "a stop sequence": text_limits.STOP_MAX_CHARS,
        "a dataset's name": text_limits.DATASET_NAME_MAX_CHARS,
        "a project's name": NAME_MAX_LENGTH,
    }
    for what, value in limits.items():
        assert f"{what} {value:,}" in doc, what
    top = next(m.le for m in GenParams.model_fields["max_new_tokens"].metadata if hasattr(m, "le"))
    assert f"is 1 to {top}" in doc
