"""Job event streams in Redis: workers append, the SSE relay reads and replays.

One Redis Stream per job (`job_stream_key`). Each entry has `type` (metric | status | log)
and `data` (JSON). Stream ids double as SSE event ids, so a browser that reconnects with
`Last-Event-ID` gets exactly what it missed. The database keeps the durable copy of metrics
(MetricPoint), so a stream lost with a Redis restart costs nothing but liveness.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.client import Pipeline

from app.config import get_settings
from app.redis_keys import job_stream_key

STREAM_MAXLEN = 200_000  # about 200k steps of history per job before the oldest are trimmed


def publish(client: redis.Redis, job_id: int, kind: str, data: dict[str, Any]) -> str:
    """Append one event to a job's stream (sync: used by workers). Returns the stream id."""
    return publish_to(client, job_stream_key(job_id), kind, data)


def publish_to(
    client: redis.Redis | Pipeline,
    key: str,
    kind: str,
    data: dict[str, Any],
    ttl_s: int | None = None,
) -> str:
    """Append one event to any stream; `ttl_s` lets short-lived streams (chat answers) expire.

    Returns the entry id; on a pipeline the commands are only queued and the id is "".
    """
    entry_id = client.xadd(
        key, {"type": kind, "data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True
    )
    if ttl_s:
        client.expire(key, ttl_s)
    return "" if isinstance(client, Pipeline) else str(entry_id)


def read_all(client: redis.Redis, job_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (entry_id, fields["type"], json.loads(fields["data"]))
        for entry_id, fields in client.xrange(job_stream_key(job_id))
    ]


def async_client() -> aioredis.Redis:
    return aioredis.Redis.from_url(get_settings().broker_url, decode_responses=True)


async def follow(
    client: aioredis.Redis, key: str, last_id: str, block_ms: int = 1000
) -> AsyncIterator[tuple[str, str, dict[str, Any]] | None]:
    """Yield events of stream `key` after `last_id` as they arrive; None on each idle block."""
    while True:
        batches = await client.xread({key: last_id}, block=block_ms, count=500)
        if not batches:
            yield None
            continue
        for _key, entries in batches:
            for entry_id, fields in entries:
                last_id = entry_id
                yield entry_id, fields["type"], json.loads(fields["data"])


def sse_frame(event_id: str | None, kind: str, data: dict[str, Any]) -> str:
    lines = []
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {kind}")
    lines.append(f"data: {json.dumps(data, ensure_ascii=False)}")
    return "\n".join(lines) + "\n\n"
