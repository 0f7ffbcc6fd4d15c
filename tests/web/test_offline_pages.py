"""No page of Tunelab references another host: every script, stylesheet, image and link it
serves is Tunelab's own, so an offline or air-gapped server shows complete pages.

Each page's HTML is parsed; any attribute holding an absolute URL (src, href, hx-get, ...) must
point at this server, and no inline script or style may name an http(s) URL.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

OWN_HOSTS = {None, "testserver", "127.0.0.1", "localhost"}
URL_IN_CODE = re.compile(r"https?://[^\s'\"<>)]+")


class ForeignReferences(HTMLParser):
    """Collects (tag, attribute, value) for absolute URLs to other hosts, and inline code URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_code = tag in ("script", "style")
        for name, value in attrs:
            for url in (value or "").split(","):  # srcset lists several
                parts = urlsplit(url.strip().split(" ")[0])
                if parts.netloc and parts.hostname not in OWN_HOSTS:
                    self.found.append(f"<{tag} {name}={value!r}>")

    def handle_endtag(self, tag: str) -> None:
        self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.found.extend(f"inline code: {url}" for url in URL_IN_CODE.findall(data))


def foreign_references(html: str) -> list[str]:
    parser = ForeignReferences()
    parser.feed(html)
    return parser.found


def test_the_checker_sees_a_cdn() -> None:
    # What FastAPI's own /docs page looked like before the assets were vendored.
    html = (
        '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/x.css">'
        '<script src="/static/vendor/htmx-2.0.8.min.js"></script>'
        "<script>const ui = SwaggerUIBundle({url: 'https://unpkg.com/spec.json'})</script>"
        '<img srcset="/a.png 1x, //cdn.example.com/b.png 2x"><a href="/projects">p</a>'
    )
    assert foreign_references(html) == [
        "<link href='https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/x.css'>",
        "inline code: https://unpkg.com/spec.json",
        "<img srcset='/a.png 1x, //cdn.example.com/b.png 2x'>",
    ]


def _pages(client) -> list[str]:  # type: ignore[no-untyped-def]
    """One of each kind of page, with real rows behind it (no worker needed to render them)."""
    project = client.post("/api/projects", json={"name": "offline"}).json()
    rows = [{"instruction": f"问题 {i}", "output": f"答案 {i}"} for i in range(8)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    created = client.post(
        f"/projects/{project['id']}/jobs",
        data={"dataset_id": str(dataset["id"]), "epochs": "1"},
        follow_redirects=False,
    )
    assert created.status_code in (302, 303), created.text
    chat = client.post(
        f"/projects/{project['id']}/chat", data={"model": "base"}, follow_redirects=False
    )
    assert chat.status_code in (302, 303), chat.text
    return [
        "/projects",
        f"/projects/{project['id']}",
        f"/projects/{project['id']}/runs/new",
        "/models",
        f"/datasets/{dataset['id']}",
        created.headers["location"],
        f"/projects/{project['id']}/chat",
        chat.headers["location"],
        "/docs",
        "/redoc",
    ]


def test_no_page_references_another_host(client) -> None:  # type: ignore[no-untyped-def]
    pages = _pages(client)
    assert any(p.startswith("/jobs/") for p in pages) and any(p.startswith("/chat/") for p in pages)
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert foreign_references(response.text) == [], path
