"""An answer whose live stream is gone says so on the chat page instead of waiting forever
(static/js/chat.js): the server's `stream_lost` event when Redis goes away mid-answer, and the
browser's own give-up when the server refuses the stream (Redis restarted, so the request is
unknown, or Redis is down).

No worker: the test writes the answer's request and events into Redis as the infer worker
would (workers/tasks/infer.py), so it decides when the stream breaks."""

from __future__ import annotations

import json

import httpx
from playwright.sync_api import expect
from sqlalchemy import select

from app import events
from app.db import session_scope
from app.event_types import GenerationStatus, GenerationToken
from app.i18n import Translator
from app.models import ChatMessage, User
from app.redis_client import get_redis
from app.redis_keys import generation_request_key, generation_stream_key


def streaming_answer(live_server: str, request_id: str) -> str:
    """A conversation whose last answer is still streaming under `request_id`; its page."""
    api = httpx.Client(base_url=live_server, timeout=30)
    project = api.post("/api/projects", json={"name": "断流"}).json()
    conversation = api.post(
        f"/projects/{project['id']}/chat", data={"model": "base"}, follow_redirects=False
    ).headers["location"]
    conversation_id = int(conversation.rsplit("/", 1)[1])
    with session_scope() as session:
        session.add(ChatMessage(conversation_id=conversation_id, role="user", content="hi", turn=1))
        session.add(
            ChatMessage(
                conversation_id=conversation_id,
                role="assistant",
                model="base",
                turn=1,
                state="streaming",
                request_id=request_id,
            )
        )
        owner = session.scalars(select(User.id)).first()
    payload = {"owner_id": owner, "message_id": None, "model": {}, "messages": [], "params": {}}
    get_redis().set(generation_request_key(request_id), json.dumps(payload), ex=600)
    return f"{live_server}{conversation}"


def test_a_refused_stream_says_so_in_chinese(browser, live_server, platform_env) -> None:  # type: ignore[no-untyped-def]
    """After a Redis restart the answer's request is unknown: the stream answers 404."""
    url = streaming_answer(live_server, "f" * 32)
    get_redis().delete(generation_request_key("f" * 32))  # what a restarted Redis has
    context = browser.new_context(locale="zh-CN")
    try:
        page = context.new_page()
        page.goto(url)
        answer = page.locator(".bubble-assistant").last
        expect(answer.locator(".alert-error")).to_have_text(
            Translator("zh-CN")("chat.stream_unavailable"), timeout=15_000
        )
        expect(answer.locator(".stop-button")).to_be_disabled()
    finally:
        context.close()


def test_redis_lost_mid_answer_says_so(browser, live_server, restartable_redis) -> None:  # type: ignore[no-untyped-def]
    request_id = "e" * 32
    url = streaming_answer(live_server, request_id)
    key = generation_stream_key(request_id)
    events.publish(get_redis(), key, GenerationStatus(state="generating"))
    events.publish(get_redis(), key, GenerationToken(text="张家界"))
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(url)
        answer = page.locator(".bubble-assistant").last
        expect(answer.locator(".content")).to_have_text("张家界", timeout=15_000)
        restartable_redis.kill()
        expect(answer.locator(".alert-error")).to_have_text(
            Translator("en")("chat_errors.stream_lost"), timeout=15_000
        )
        expect(answer.locator(".stop-button")).to_be_disabled()
    finally:
        context.close()
