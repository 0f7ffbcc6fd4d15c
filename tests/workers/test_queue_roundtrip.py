"""A task sent by the web's Celery client runs on a real worker through the real Redis."""

from __future__ import annotations

import time
import uuid

from app import queue
from app.redis_client import get_redis
from app.redis_keys import ping_reply_key


def test_ping_round_trip(platform_env, worker) -> None:  # type: ignore[no-untyped-def]
    token = uuid.uuid4().hex
    queue.enqueue(queue.TaskName.PING, token)
    deadline = time.monotonic() + 20
    reply = None
    while reply is None and time.monotonic() < deadline:
        reply = get_redis().get(ping_reply_key(token))
        time.sleep(0.05)
    assert reply is not None, "the worker never ran the task"
    assert int(reply) != 0
