"""Field length limits (app.services.text_limits): a chat message, a system prompt, a stop
sequence, the messages of a /v1 request, their number, max_tokens and a dataset's name. Each is
refused with a message that names the limit, before anything is stored or queued; the limit
itself is accepted."""

from __future__ import annotations

import json
import os

import redis
from sqlalchemy import func, select

from app.models import ChatMessage, Conversation
from app.redis_keys import generation_request_key
from app.services import text_limits
from app.services.generation import GenParams

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def _queued_generations() -> list[bytes]:
    pattern = generation_request_key("*")
    return list(redis.Redis.from_url(os.environ["TUNELAB_REDIS_URL"]).scan_iter(pattern))


def _conversation(client, db_session) -> tuple[dict, Conversation]:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Limits"}).json()
    created = client.post(f"/projects/{project['id']}/chat", data={"model": "base"})
    assert created.status_code == 200, created.text
    conversation = db_session.scalars(select(Conversation)).one()
    return project, conversation


def test_a_chat_message_over_the_limit_is_refused(client, db_session) -> None:  # type: ignore[no-untyped-def]
    _project, conversation = _conversation(client, db_session)
    before = _queued_generations()  # other tests' requests may linger until their TTL
    limit = text_limits.PROMPT_MAX_CHARS
    url = f"/chat/{conversation.id}/messages"
    response = client.post(url, data={"content": "字" * (limit + 1)}, headers=ZH)
    assert response.status_code == 422
    assert f"消息有 {limit + 1} 个字符，请缩短到 {limit} 个以内。" in response.text
    assert db_session.scalar(select(func.count()).select_from(ChatMessage)) == 0
    assert _queued_generations() == before

    # The limit itself is no length problem (here there is no worker to answer it).
    at_limit = client.post(url, data={"content": "x" * limit})
    assert at_limit.status_code == 503
    assert "characters" not in at_limit.text


def test_a_system_prompt_or_stop_sequence_over_the_limit_is_refused(client, db_session) -> None:  # type: ignore[no-untyped-def]
    project, conversation = _conversation(client, db_session)
    limit = text_limits.SYSTEM_PROMPT_MAX_CHARS
    too_long = "s" * (limit + 1)
    message = f"The system prompt has {limit + 1} characters; shorten it to at most {limit}."

    new = client.post(f"/projects/{project['id']}/chat", data={"system_prompt": too_long})
    assert new.status_code == 422 and message in new.text
    assert db_session.scalar(select(func.count()).select_from(Conversation)) == 1

    url = f"/chat/{conversation.id}/settings"
    changed = client.post(url, data={"system_prompt": too_long})
    assert changed.status_code == 422 and message in changed.text
    stop = "x" * (text_limits.STOP_MAX_CHARS + 1)
    changed = client.post(url, data={"system_prompt": "short", "stop": f"END|{stop}"})
    assert changed.status_code == 422 and "stop.1" in changed.text
    db_session.refresh(conversation)
    assert conversation.system_prompt == "" and conversation.params["stop"] == []

    fine = client.post(url, data={"system_prompt": "s" * limit, "stop": "END|###"})
    assert fine.status_code == 200
    db_session.refresh(conversation)
    assert len(conversation.system_prompt) == limit
    assert conversation.params["stop"] == ["END", "###"]


def _v1(client, body: dict, **headers: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/chat/completions", json=body, headers=headers)


def test_v1_refuses_too_much_text_too_many_messages_and_out_of_range_max_tokens(client) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Open"}).json()
    model = f"{project['slug']}:base"
    before = _queued_generations()  # other tests' requests may linger until their TTL
    limit = text_limits.PROMPT_MAX_CHARS
    half = "x" * (limit // 2)
    # Over the limit in all, though each message is under it; content parts count too.
    messages = [
        {"role": "user", "content": half},
        {"role": "assistant", "content": half},
        {"role": "user", "content": [{"type": "text", "text": "one more"}]},
    ]
    too_long = _v1(client, {"model": model, "messages": messages})
    assert too_long.status_code == 400
    error = too_long.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "prompt_too_long",
        "messages",
        "invalid_request_error",
    )
    assert f"shorten them to at most {limit}" in error["message"]

    count = text_limits.MESSAGES_MAX + 1
    many = [{"role": "user", "content": "hi"}] * count
    too_many = _v1(client, {"model": model, "messages": many}, **ZH)
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "too_many_messages"
    assert f"请求包含 {count} 条消息" in too_many.json()["error"]["message"]

    highest = GenParams.model_fields["max_new_tokens"].metadata
    top = next(m.le for m in highest if hasattr(m, "le"))
    hi = [{"role": "user", "content": "hi"}]
    for field, value in (
        ("max_tokens", top + 1),
        ("max_completion_tokens", top + 1),
        ("max_tokens", 0),
    ):
        response = _v1(client, {"model": model, "messages": hi, field: value})
        assert response.status_code == 400, (field, value)
        assert response.json()["error"]["code"] == "invalid_value"
    long_stop = _v1(
        client, {"model": model, "messages": hi, "stop": ["x" * (text_limits.STOP_MAX_CHARS + 1)]}
    )
    assert long_stop.status_code == 400
    assert _queued_generations() == before

    # Within every limit, the request gets as far as asking for a worker (there is none here).
    within = _v1(client, {"model": model, "messages": hi, "max_tokens": top})
    assert within.status_code == 503, within.text


def test_a_dataset_name_over_the_limit_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Named"}).json()
    url = f"/api/projects/{project['id']}/datasets"
    content = json.dumps({"instruction": "q", "output": "a"}).encode()
    limit = text_limits.DATASET_NAME_MAX_CHARS
    response = client.post(
        url, files={"file": ("rows.jsonl", content)}, data={"name": "n" * (limit + 1)}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {
            "field": "name",
            "message": f"The name has {limit + 1} characters; shorten it to at most {limit}.",
        }
    ]
    assert client.get(url).json()["count"] == 0
    renamed = client.post(url, files={"file": ("rows.jsonl", content)}, data={"name": "n" * limit})
    assert renamed.status_code == 201 and renamed.json()["name"] == "n" * limit
