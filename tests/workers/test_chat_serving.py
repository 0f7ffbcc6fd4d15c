"""Chat and the OpenAI-compatible API through the whole platform path: HTTP → Celery → infer
worker (engine) → Redis → SSE. The base is the tiny random Llama; versions are real PEFT
adapters saved by peft (tests/inference/helpers.build_adapter) and registered as versions."""

from __future__ import annotations

import json
import time

import pytest


def read_stream(client, request_id: str, limit: int | None = None) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    out: list[tuple[str, dict]] = []
    with client.stream("GET", f"/api/generations/{request_id}/events") as response:
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                out.append((kind, json.loads(line[6:])))
                if kind in ("done", "error") or (limit and len(out) >= limit):
                    break
    return out


def new_chat(client, project, max_new_tokens: int = 24, **form) -> int:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/projects/{project['id']}/chat", data=form, headers={"HX-Request": "true"}
    )
    conversation = int(response.headers["HX-Redirect"].rsplit("/", 1)[1])
    settings = {
        "max_new_tokens": max_new_tokens,
        "model": form.get("model", "base"),
        "compare_model": form.get("compare_model", ""),
    }
    client.post(f"/chat/{conversation}/settings", data=settings)
    return conversation


def send(client, conversation_id: int, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Send a message; the request ids of the turn's answers (read from the database: an answer
    that finished before the page was rendered shows as done, with no stream attribute)."""
    from sqlalchemy import func, select

    from app.db import session_scope
    from app.models import ChatMessage

    response = client.post(f"/chat/{conversation_id}/messages", data={"content": text})
    assert response.status_code == 200, response.text
    with session_scope() as session:
        mine = ChatMessage.conversation_id == conversation_id
        turn = session.scalar(select(func.max(ChatMessage.turn)).where(mine))
        rows = session.scalars(
            select(ChatMessage.request_id)
            .where(mine, ChatMessage.turn == turn, ChatMessage.role == "assistant")
            .order_by(ChatMessage.id)
        )
        return [r for r in rows if r]


def test_chat_streams_and_saves_the_answer(client, worker, served) -> None:  # type: ignore[no-untyped-def]
    conversation = new_chat(client, served["project"], model="v1")
    [request_id] = send(client, conversation, "张家界有什么好玩的？")
    events = read_stream(client, request_id)
    tokens = [d["text"] for kind, d in events if kind == "token"]
    done = events[-1]
    assert done[0] == "done", events[-3:]
    # Text arrives in pieces of whole characters: a piece may carry several tokens.
    assert 0 < len(tokens) <= done[1]["completion_tokens"]
    assert done[1]["time_to_first_token_s"] > 0 and done[1]["tokens_per_s"] > 0
    page = client.get(f"/chat/{conversation}").text
    assert "张家界有什么好玩的" in page
    assert 'data-state="done"' in page and "tokens/s" in page


def test_compare_streams_both_and_counts_votes(client, worker, served) -> None:  # type: ignore[no-untyped-def]
    conversation = new_chat(client, served["project"], model="v2", compare_model="base")
    request_ids = send(client, conversation, "天门山怎么去？")
    assert len(request_ids) == 2
    results = [read_stream(client, rid) for rid in request_ids]
    assert all(r[-1][0] == "done" for r in results)
    page = client.get(f"/chat/{conversation}").text
    answer_id = int(page.split('id="answer-')[1].split('"')[0])
    vote = client.post(
        f"/api/projects/{served['project']['id']}/votes",
        json={"message_id": answer_id, "winner": "v2"},
    )
    assert vote.status_code == 201
    [tally] = vote.json()["tally"]
    assert {k: tally[k] for k in ("model_a", "model_b", "a", "b", "tie")} == {
        "model_a": "base", "model_b": "v2", "a": 0, "b": 1, "tie": 0,
    }  # fmt: skip
    assert tally["b_rate"] == 1.0


def test_stop_and_disconnect_free_the_worker(client, worker, served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.services import answer_readers

    # A page that leaves gets RESUME_GRACE_S to come back (a web restart) before its answer is
    # cancelled; the tiny model would finish its answer within that time.
    monkeypatch.setattr(answer_readers, "RESUME_GRACE_S", 0.0)
    conversation = new_chat(client, served["project"], max_new_tokens=4000, model="v1")
    [request_id] = send(client, conversation, "Write a very long story.")
    read_stream(client, request_id, limit=3)  # reading a few tokens, then the client goes away
    started = time.monotonic()
    page = ""
    while time.monotonic() - started < 30:
        page = client.get(f"/chat/{conversation}").text
        if 'data-state="stopped"' in page:
            break
        time.sleep(0.3)
    assert 'data-state="stopped"' in page

    [request_id] = send(client, conversation, "And another one.")
    assert client.post(f"/api/generations/{request_id}/cancel").status_code == 202
    events = read_stream(client, request_id)
    assert events[-1][0] == "done" and events[-1][1]["finish_reason"] == "cancelled"
    assert events[-1][1]["completion_tokens"] < 4000


def test_openai_client_works_unchanged(live_server, worker, served) -> None:  # type: ignore[no-untyped-def]
    import openai

    client = openai.OpenAI(base_url=f"{live_server}/v1", api_key="unused")
    ids = {m.id for m in client.models.list()}
    assert {"chat:base", "chat:v1", "chat:v2"} <= ids

    reply = client.chat.completions.create(
        model="chat:v2",
        messages=[{"role": "user", "content": "你好"}],
        max_tokens=12,
        temperature=0,
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens == 12 and reply.choices[0].finish_reason == "length"
    assert reply.usage.prompt_tokens > 0

    chunks = list(
        client.chat.completions.create(
            model="chat:v1",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 9 and chunks[-1].choices[0].finish_reason == "length" and text

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope:v9", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model="chat:v1", messages=[{"role": "user", "content": "word " * 9000}], max_tokens=4
        )
    assert "over the model's limit" in str(too_long.value)


def test_no_infer_worker_is_a_clear_message(client, served, lonely_redis) -> None:  # type: ignore[no-untyped-def]
    conversation = new_chat(client, served["project"], model="base")
    started = time.monotonic()
    response = client.post(f"/chat/{conversation}/messages", data={"content": "hi"})
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert "No worker serves chat" in response.text
