"""Event streams in Redis: workers append typed events, the SSE relay (app/web/sse.py) follows.

One Redis Stream per training job (`job_stream_key`) and one per chat answer
(`generation_stream_key`). An entry has two fields: `type` (the event's discriminator) and `data`
(its other fields as JSON), the models being those of app/event_types.py. Stream ids double as SSE
event ids, so a browser that reconnects with `Last-Event-ID` gets exactly what it missed. The
database keeps the durable copy of metrics (MetricPoint), so a stream lost with a Redis restart
costs nothing but liveness.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

import redis
import redis.asyncio as aioredis
from pydantic import TypeAdapter
from redis.client import Pipeline

from app.config import get_settings
from app.event_types import JOB_EVENTS, JobEvent
from app.redis_keys import job_stream_key

logger = logging.getLogger(__name__)

STREAM_MAXLEN = 200_000  # about 200k steps of history per job before the oldest are trimmed
E = TypeVar("E")


class Event(Protocol):
    """Any model of app/event_types.py."""

    @property
    def type(self) -> str: ...

    def model_dump_json(self, *, exclude: set[str]) -> str: ...


def entry(event: Event) -> dict[str, str]:
    """The stream entry of an event: the layout every stream has had, so old entries still read."""
    return {"type": event.type, "data": event.model_dump_json(exclude={"type"})}


def publish(
    client: redis.Redis | Pipeline, key: str, event: Event, ttl_s: int | None = None
) -> str:
    """Append one event to a stream; `ttl_s` lets short-lived streams (chat answers) expire.

    Returns the entry id; on a pipeline the commands are only queued and the id is "".
    """
    entry_id = client.xadd(key, entry(event), maxlen=STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    if ttl_s:
        client.expire(key, ttl_s)
    return "" if isinstance(client, Pipeline) else str(entry_id)


def publish_job(client: redis.Redis, job_id: int, event: JobEvent) -> str:
    """Append one event to a job's stream (sync: used by workers). Returns the stream id."""
    return publish(client, job_stream_key(job_id), event)


def parse(adapter: TypeAdapter[E], fields: dict[str, str]) -> E:
    """The model of one stream entry; raises ValueError (ValidationError) for an unknown type."""
    return adapter.validate_python({**json.loads(fields["data"]), "type": fields["type"]})


def read_job_events(client: redis.Redis, job_id: int) -> list[tuple[str, JobEvent]]:
    """The whole stream of a job (the worker recovers metrics from it on resume)."""
    key = job_stream_key(job_id)
    return [item for item in map(_parsed(JOB_EVENTS, key), client.xrange(key)) if item]


def _parsed(
    adapter: TypeAdapter[E], key: str
) -> Callable[[tuple[str, dict[str, str]]], tuple[str, E] | None]:
    """(id, fields) -> (id, event), or None for an entry that does not parse (a foreign or
    damaged one), logged: one bad entry must not hide the others."""

    def parse_entry(item: tuple[str, dict[str, str]]) -> tuple[str, E] | None:
        entry_id, fields = item
        try:
            return entry_id, parse(adapter, fields)
        except (ValueError, KeyError, TypeError):
            logger.warning("skipping unreadable event %s in %s: %r", entry_id, key, fields)
            return None

    return parse_entry


def async_client(socket_timeout: float | None = None) -> aioredis.Redis:
    """A connection of its own (one per followed stream); no retries, so a Redis that went away
    or restarted shows as an error the relay can act on (app/web/sse.py)."""
    return aioredis.Redis.from_url(
        get_settings().broker_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=socket_timeout,
        retry=None,
    )


async def follow(
    client: aioredis.Redis,
    key: str,
    adapter: TypeAdapter[E],
    last_id: str = "0",
    block_ms: int = 1000,
) -> AsyncIterator[tuple[str, E] | None]:
    """Yield (id, event) of stream `key` after `last_id` as they arrive; None on each idle block.
    Unreadable entries are skipped (see `_parsed`)."""
    parse_entry = _parsed(adapter, key)
    while True:
        batches = await client.xread({key: last_id}, block=block_ms, count=500)
        if not batches:
            yield None
            continue
        for _key, entries in batches:
            for item in entries:
                last_id = item[0]
                parsed = parse_entry(item)
                if parsed is not None:
                    yield parsed
