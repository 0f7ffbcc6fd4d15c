"""Request bodies have a ceiling: JSON and forms at `max_body_kb`, file uploads at `max_upload_mb`
plus that. Past it the answer is a 413 in the app's error shape (JSON for the API and /v1, a page
in the reader's language for browsers), whether the body declares its length or arrives in
chunks, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import get_settings

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


@pytest.fixture
def small_limits(platform_env, monkeypatch) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """A 4 KiB body limit and a 1 MB upload limit, so tests send little."""
    monkeypatch.setenv("TUNELAB_MAX_BODY_KB", "4")
    monkeypatch.setenv("TUNELAB_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _over_body_limit() -> int:
    return get_settings().max_body_bytes + 1


def test_a_json_body_over_the_limit_is_refused_and_nothing_is_stored(client, small_limits) -> None:  # type: ignore[no-untyped-def]
    description = "x" * _over_body_limit()
    response = client.post("/api/projects", json={"name": "Big", "description": description})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "body_too_large"
    limit_kb = get_settings().max_body_kb
    assert error["message"] == (
        f"The request is larger than the limit of {limit_kb} KiB. Send less, or raise "
        "TUNELAB_MAX_BODY_KB."
    )
    zh = client.post("/api/projects", json={"name": "Big", "description": description}, headers=ZH)
    assert zh.status_code == 413 and f"{limit_kb} KiB 的上限" in zh.json()["error"]["message"]
    assert client.get("/api/projects").json()["count"] == 0

    # Just under the limit is fine (the project's own description limit aside).
    small = client.post("/api/projects", json={"name": "Small", "description": "x" * 100})
    assert small.status_code == 201


def test_a_chunked_body_is_counted_as_it_arrives(client, small_limits) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"name": "Chunked", "description": "x" * _over_body_limit()}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    response = client.post(
        "/api/projects", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert client.get("/api/projects").json()["count"] == 0


def test_a_form_over_the_limit_gets_a_page_in_the_readers_language(client, small_limits) -> None:  # type: ignore[no-untyped-def]
    form = {"name": "Form", "description": "x" * _over_body_limit()}
    response = client.post("/projects", data=form, headers=ZH)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert f"请求内容超过了 {get_settings().max_body_kb} KiB 的上限" in response.text
    assert client.get("/api/projects").json()["count"] == 0


def test_the_openai_api_answers_in_its_error_shape(client, small_limits) -> None:  # type: ignore[no-untyped-def]
    big = {"model": "x", "messages": [{"role": "user", "content": "x" * _over_body_limit()}]}
    response = client.post("/v1/chat/completions", json=big)
    assert response.status_code == 413
    error = response.json()["error"]
    # OpenAI's clients read `error.message`; `code` says which limit.
    assert error["code"] == "body_too_large" and "KiB" in error["message"]


def test_an_upload_may_be_larger_but_not_unbounded(client, small_limits) -> None:  # type: ignore[no-untyped-def]
    settings = get_settings()
    project = client.post("/api/projects", json={"name": "Uploads"}).json()
    url = f"/api/projects/{project['id']}/datasets"
    row = json.dumps({"instruction": "q", "output": "a"}).encode() + b"\n"

    # Over the JSON limit but within the upload limit: a multipart upload goes through.
    fine = row * (_over_body_limit() // len(row) + 1)
    assert len(fine) > settings.max_body_bytes
    created = client.post(url, files={"file": ("fine.jsonl", fine)})
    assert created.status_code == 201, created.text

    # Past the upload limit plus the body limit: refused before anything is parsed or staged.
    ceiling = settings.max_upload_bytes + settings.max_body_bytes
    huge = row * (ceiling // len(row) + 1)
    refused = client.post(url, files={"file": ("huge.jsonl", huge)})
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "upload_too_large"
    assert f"upload limit of {settings.max_upload_mb} MB" in error["message"]
    assert client.get(url).json()["count"] == 1
    staged = Path(settings.data_dir) / "uploads"
    assert not staged.exists() or not any(staged.iterdir())

    # The ceiling holds for forms that take no file at all (Starlette would spool it to disk).
    spool = client.post("/projects", data={"name": "Spool"}, files={"extra": ("x.bin", huge)})
    assert spool.status_code == 413
    assert [p["name"] for p in client.get("/api/projects").json()["data"]] == ["Uploads"]
