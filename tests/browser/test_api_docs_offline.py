"""The nav's API link works on a server with no internet: /docs (Swagger UI) and /redoc (ReDoc)
render every operation from Tunelab's own static files, and the browser asks no other host
for anything (each such request is recorded and refused, as an offline network would)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect


def record_other_hosts(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Refuse, and list, every request the page makes to a host other than this server."""
    elsewhere: list[str] = []

    def handle(route) -> None:  # type: ignore[no-untyped-def]
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return elsewhere


def test_swagger_ui_renders_offline_from_the_nav(page, live_server) -> None:  # type: ignore[no-untyped-def]
    elsewhere = record_other_hosts(page)
    page.goto(f"{live_server}/projects")
    page.click("nav >> text=API")
    expect(page).to_have_url(f"{live_server}/docs")
    projects = page.locator('.opblock-summary-path[data-path="/api/projects"]')
    expect(projects.first).to_be_visible()
    assert page.locator(".opblock").count() > 20  # every operation, not just a shell
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tunelab")
    assert elsewhere == []


def test_redoc_renders_offline(page, live_server) -> None:  # type: ignore[no-untyped-def]
    elsewhere = record_other_hosts(page)
    page.goto(f"{live_server}/redoc")
    operations = page.locator("[data-section-id^='operation/']")
    expect(operations.first).to_be_attached()
    assert operations.count() > 20
    expect(page.locator("h1").first).to_contain_text("Tunelab")
    assert elsewhere == []
