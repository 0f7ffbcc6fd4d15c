"""A generation stream belongs to whoever started it, and a failed chat answer reads in the
reader's language, live and after a reload. Through the whole platform path: HTTP → Celery →
infer worker (the tiny random Llama) → Redis → SSE relay."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from markupsafe import escape

from app.config import get_settings
from app.i18n import Translator
from app.models import User
from app.redis_keys import generation_cancel_key
from app.web.deps import get_current_user
from tests.workers.test_chat_serving import new_chat, read_stream, send


@pytest.fixture
def project(client, tiny_model_dir) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    return client.post("/api/projects", json={"name": "own", "base_model": model["id"]}).json()


def test_another_users_generation_is_not_found(client, worker, project, db_session) -> None:  # type: ignore[no-untyped-def]
    """Tunelab has a single local user today: `get_current_user` (app/web/deps.py) is where
    accounts will plug in. The second user therefore comes in by overriding that dependency in
    the app under test, so the routes, the relay and the ownership check are the real ones and
    only who is asking changes; the user is a real row of the test database."""
    conversation = new_chat(client, project)
    [request_id] = send(client, conversation, "Tell me about Zhangjiajie.")
    other = User(username=f"other-{uuid.uuid4().hex[:8]}")
    db_session.add(other)
    db_session.commit()

    unknown = uuid.uuid4().hex
    client.app.dependency_overrides[get_current_user] = lambda: other
    try:
        answers = {
            rid: (
                client.get(f"/api/generations/{rid}/events"),
                client.post(f"/api/generations/{rid}/cancel"),
            )
            for rid in (request_id, unknown)
        }
    finally:
        client.app.dependency_overrides.clear()
    for events, cancel in answers.values():
        assert events.status_code == 404 and cancel.status_code == 404
    # Another user's id reads exactly like an unknown one: it reveals nothing.
    assert answers[request_id][0].json() == answers[unknown][0].json()
    bus = redis.Redis.from_url(get_settings().broker_url)
    assert not bus.exists(generation_cancel_key(request_id))  # the refused cancel did nothing

    events = read_stream(client, request_id)  # the owner still gets the whole answer
    assert events[-1][0] == "done" and events[-1][1]["finish_reason"] != "cancelled"
    assert client.post(f"/api/generations/{request_id}/cancel").status_code == 202


def test_a_failed_chat_reads_in_chinese_live_and_after_reload(client, worker, project) -> None:  # type: ignore[no-untyped-def]
    client.headers["Accept-Language"] = "zh-CN,zh;q=0.9,en;q=0.8"
    conversation = new_chat(client, project)
    [request_id] = send(client, conversation, "word " * 9000)  # longer than the model's context

    kind, error = read_stream(client, request_id)[-1]
    assert kind == "error" and error["code"] == "prompt_too_long", error
    params = error["params"]
    assert params["over_by"] == params["prompt_tokens"] - params["limit"] > 0
    chinese = Translator("zh-CN")("chat_errors.prompt_too_long", **params)
    assert error["text"] == chinese and chinese.startswith("这段对话有")  # rendered by the relay
    assert "over the model's limit" in error["message"]  # English stays, for logs and the API

    page = client.get(f"/chat/{conversation}").text
    assert 'data-state="error"' in page
    assert escape(chinese) in page and "over the model's limit" not in page

    client.headers["Accept-Language"] = "en"
    page = client.get(f"/chat/{conversation}").text
    english = Translator("en")("chat_errors.prompt_too_long", **params)
    assert escape(english) in page
