"""The database goes away and comes back: pages and the API answer 503 with a message in the
reader's language (the JSON error shape for /api and /v1, the error page for browsers), never
a 500 or a stack trace, and serve again once it is back.

For real: the app reaches this test's PostgreSQL database through a TCP proxy, which the test
cuts (connections refused, pooled ones dropped) and restores on the same port.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.helpers.services import reset_app_caches
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
BROWSER = {"Accept": "text/html,application/xhtml+xml"}
EN_TEXT = "The database is not answering right now."
ZH_TEXT = "数据库暂时没有响应。"


@pytest.fixture
def proxy(platform_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """The app's database URL pointed at a proxy in front of the test database."""
    real = platform_env["TUNELAB_DATABASE_URL"]
    parts = urlsplit(real)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxy.start()
    via_proxy = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    monkeypatch.setenv("TUNELAB_DATABASE_URL", via_proxy)
    reset_app_caches()
    yield proxy
    proxy.cut()
    monkeypatch.setenv("TUNELAB_DATABASE_URL", real)
    reset_app_caches()


def assert_unavailable(response, text: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json() == {
        "error": {
            "code": "database_unavailable",
            "message": response.json()["error"]["message"],
            "details": None,
        }
    }
    assert text in response.json()["error"]["message"]
    assert "Traceback" not in response.text and "psycopg" not in response.text


def test_api_and_pages_answer_503_while_the_database_is_away(proxy: TcpProxy) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    proxy.cut()  # away from the start: the app must come up and answer anyway
    with TestClient(create_app()) as client:
        assert_unavailable(client.get("/api/projects", headers=EN), EN_TEXT)
        assert client.get("/healthz").status_code == 503

        proxy.start()  # back: served again, on the connections the pool opens now
        created = client.post("/api/projects", json={"name": "Still here"})
        assert created.status_code == 201, created.text

        proxy.cut()  # away again: the pooled connection is dead too
        assert_unavailable(client.get("/api/projects", headers=EN), EN_TEXT)
        assert_unavailable(client.get("/api/projects", headers=ZH), ZH_TEXT)
        assert_unavailable(client.post("/api/projects", json={"name": "Lost?"}), EN_TEXT)
        assert_unavailable(client.get(f"/api/projects/{created.json()['id']}/jobs"), EN_TEXT)
        assert_unavailable(client.get("/v1/models"), EN_TEXT)
        for headers, text in ((EN, EN_TEXT), (ZH, ZH_TEXT)):
            page = client.get("/projects", headers={**BROWSER, **headers})
            assert page.status_code == 503
            assert page.headers["content-type"].startswith("text/html")
            assert text in page.text and "Traceback" not in page.text

        proxy.start()
        listed = client.get("/api/projects")
        assert listed.status_code == 200
        assert [p["name"] for p in listed.json()["data"]] == ["Still here"]
