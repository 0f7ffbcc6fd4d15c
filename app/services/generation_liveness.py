"""An answer whose worker died ends with an error instead of waiting forever.

The chat worker that takes a generation records itself as the request's owner
(`generation_owner_key`: its hostname and its heartbeat's pid and start time). A worker that
crashes writes nothing more: no token, no `done`, no `error`, and the chat message row stays
"streaming". Its heartbeat key, though, expires within three heartbeats (workers/heartbeat.py),
or is rewritten by a restarted worker of the same name with another pid or start time. The
relays (app/web/sse.py) call `watch` while a stream is idle; once the owner's heartbeat is gone
or belongs to another process, the first relay to notice marks the message row failed and
appends a `chat_worker_lost` error to the stream, so every reader (this one, a reconnecting
page, the OpenAI-compatible API) ends on it like any other error.

A request no worker took yet has no owner and is left alone: it waits in the queue for the
next worker (the relay's idle limit is the bound there).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from redis import Redis
from sqlalchemy import update

from app import events
from app.db import session_scope
from app.event_types import ChatErrorCode, GenerationError
from app.models import ChatMessage
from app.redis_client import get_redis
from app.redis_keys import (
    generation_owner_key,
    generation_request_key,
    generation_stream_key,
    worker_heartbeat_key,
)

logger = logging.getLogger(__name__)
STREAM_TTL_S = 3600  # as the worker's (workers/tasks/infer.py)


def owner_record(heartbeat: dict[str, Any] | None, hostname: str) -> dict[str, Any]:
    """What the worker stores as a request's owner: its name, and its heartbeat's pid and
    start time (None when the heartbeat is not there to read)."""
    beat = heartbeat or {}
    return {"hostname": hostname, "pid": beat.get("pid"), "started": beat.get("started")}


def owner_gone(owner: dict[str, Any], heartbeat: dict[str, Any] | None) -> bool:
    """Whether the owner's process is dead: its heartbeat expired, or another process (a
    restarted worker under the same name) writes it now."""
    if heartbeat is None:
        return True
    return any(
        owner.get(field) is not None and heartbeat.get(field) != owner[field]
        for field in ("pid", "started")
    )


def _read(redis: Redis, key: str) -> dict[str, Any] | None:
    raw = redis.get(key)
    return json.loads(raw) if raw else None


def fail_if_owner_lost(request_id: str) -> bool:
    """End the answer with `chat_worker_lost` when its worker died; True when it did now."""
    redis = get_redis()
    owner = _read(redis, generation_owner_key(request_id))
    if owner is None:
        return False
    if not owner_gone(owner, _read(redis, worker_heartbeat_key(owner["hostname"]))):
        return False
    # One relay acts: the one whose DEL removed the record (others find nothing to remove).
    if not redis.delete(generation_owner_key(request_id)):
        return False
    error = GenerationError.of(ChatErrorCode.CHAT_WORKER_LOST)
    request = _read(redis, generation_request_key(request_id)) or {}
    message_id = request.get("message_id")
    if message_id is not None:
        # The row first: the page reloads the answer on the error event. Only a row still
        # streaming: a worker that saved its answer and died before the `done` event keeps it.
        with session_scope() as session:
            session.execute(
                update(ChatMessage)
                .where(ChatMessage.id == message_id, ChatMessage.state == "streaming")
                .values(
                    state="error",
                    content=error.message,
                    error_code=error.code.value,
                    error_params=error.params,
                )
            )
    events.publish(redis, generation_stream_key(request_id), error, ttl_s=STREAM_TTL_S)
    logger.warning("generation %s: its worker %s is gone", request_id, owner["hostname"])
    return True


async def watch(request_id: str) -> None:
    """The relays' idle check (EventStream's on_idle); never raises into the stream."""
    try:
        await anyio.to_thread.run_sync(fail_if_owner_lost, request_id)
    except Exception:  # Redis or the database briefly away: the next idle block tries again
        logger.warning("could not check the worker of generation %s", request_id, exc_info=True)
