"""A live Tunelab server in a thread and a headless Chromium (Debian's) driven by Playwright.

Browser tests run on SQLite only: the database behaviour is covered on both engines by the
API tests; here we test what the user sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Their PostgreSQL variants are dropped by tests/conftest.py (SQLITE_ONLY_FOLDERS).
    for item in items:
        if "tests/browser/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


# Per module, not per session: Playwright's sync API keeps its asyncio loop marked as running in
# the main thread while it is started, so any async test collected after the browser tests
# (tests/web/test_sse_relay.py) would fail with "Cannot run the event loop while another loop
# is running" if the browser lived until the end of the session.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: apt-get install chromium fonts-noto-cjk")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
