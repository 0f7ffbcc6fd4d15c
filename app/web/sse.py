"""Relaying a Redis event stream to one HTTP client: the one place that knows how streams end.

Every live stream (a job's events, a chat answer, /v1/chat/completions with `stream: true`) is an
`EventStream` (what to follow, from where, when it is over, what to do when the client leaves)
turned into response text by `relay` (SSE frames, keep-alive comments, a closing frame). The job
and chat relays write `id:/event:/data:` frames; the OpenAI relay writes OpenAI's `data:` chunks
from the same typed events.

- Resume: the stream starts after `Last-Event-ID` (stream ids are SSE ids), else at the start.
- Idle: every `keepalive_every_s` without events a `: keep-alive` comment keeps proxies from
  closing the connection.
- End: after an end event (a final job status, an answer's done or error), or, for a producer
  that had already finished when the client came, once the stream is caught up, or after
  `idle_limit_s` without events.
- Idle: `on_idle` runs at each idle block; a generation's relay checks there that the worker
  writing the answer is still alive (app/services/generation_liveness.py).
- Client gone: checked at every event and idle block; the stream stops and `on_abandon` runs (a
  chat answer nobody reads is cancelled, freeing the worker). It runs whenever the stream stops
  before its end, so a cancelled request task cancels the generation too.
- Redis lost: a connection that breaks is tried again once; if the same Redis answers (its
  `run_id`), the stream carries on from the last id, nothing missed. If Redis is gone, or
  restarted (it keeps nothing on disk, so what the stream held is gone), the stream stops with
  `lost` set and the relay writes the route's `lost` chunk instead of hanging: a chat says the
  answer was interrupted, a job page's stream just closes and the browser reconnects with
  Last-Event-ID once Redis is back (metrics are in the database).
- The Redis connection is closed whatever happens.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import Generic, Protocol, TypeVar

import anyio
import redis.asyncio as aioredis
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import events
from app.events import Event

KEEPALIVE_EVERY_S = 15.0  # idle seconds between SSE comments, so proxies keep the stream open
BLOCK_MS = 1000  # one XREAD waits this long; disconnects are noticed at least this often
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# A read may wait BLOCK_MS for events; a Redis silent this much longer is gone (a lost machine
# does not close the connection, so without a timeout the read would wait forever).
READ_MARGIN_S = 10.0
REDIS_LOST = (RedisConnectionError, RedisTimeoutError)
E = TypeVar("E", bound=Event)
logger = logging.getLogger(__name__)


class Connection(Protocol):
    """What the relay needs of the request (starlette's Request has it)."""

    async def is_disconnected(self) -> bool: ...


class EventStream(Generic[E]):
    """One Redis stream followed for one client, as an async iterator of `(id, event)` and `None`
    for each idle block. Iterating again continues where the last loop stopped (the OpenAI relay
    reads the first event before it picks the response)."""

    def __init__(
        self,
        connection: Connection,
        key: str,
        adapter: TypeAdapter[E],
        *,
        is_end: Callable[[E], bool],
        last_event_id: str | None = None,
        producer_done: bool = False,
        idle_limit_s: float | None = None,
        on_abandon: Callable[[], None] | None = None,
        on_idle: Callable[[], Awaitable[None]] | None = None,
        block_ms: int = BLOCK_MS,
    ) -> None:
        self.connection = connection
        self.key = key
        self.adapter = adapter
        self.is_end = is_end
        self.last_id = last_event_id or "0"
        self.producer_done = producer_done
        self.idle_limit_s = idle_limit_s
        self.on_abandon = on_abandon
        self.on_idle = on_idle
        self.block_s = block_ms / 1000
        self.ended = False  # the stream reached its end (not a disconnect or the idle limit)
        self.lost = False  # Redis went away or restarted: the stream cannot go on
        self._idle_s = 0.0
        self._items = self._follow()

    def __aiter__(self) -> AsyncIterator[tuple[str, E] | None]:
        return self._items

    async def aclose(self) -> None:
        await self._items.aclose()

    async def _follow(self) -> AsyncIterator[tuple[str, E] | None]:
        client = events.async_client(socket_timeout=self.block_s + READ_MARGIN_S)
        try:
            server = await _server_id(client)
            while True:
                try:
                    async for item in self._read(client):
                        yield item
                    return
                except REDIS_LOST:
                    # Only a dropped connection to the same Redis may carry on: a restarted one
                    # has lost the stream (and its ids start over).
                    if await _server_id(client) != server:
                        raise
                    logger.info("reconnected to Redis while following %s", self.key)
        except REDIS_LOST:
            logger.warning("lost Redis while following %s", self.key)
            self.lost = True
        finally:
            if not self.ended and self.on_abandon is not None:
                try:
                    self.on_abandon()
                except Exception:  # Redis away: the worker ends the answer on its own
                    logger.warning("could not abandon %s", self.key, exc_info=True)
            with anyio.CancelScope(shield=True):  # close even when the request task is cancelled
                await client.aclose()

    async def _read(self, client: aioredis.Redis) -> AsyncIterator[tuple[str, E] | None]:
        """Follow from `last_id` until the end, the client leaves or the idle limit."""
        followed = events.follow(
            client, self.key, self.adapter, self.last_id, int(self.block_s * 1000)
        )
        async with aclosing(followed):
            async for item in followed:
                if await self.connection.is_disconnected():
                    return
                if item is None:
                    self._idle_s += self.block_s
                    if self.producer_done:  # caught up with a stream nothing appends to
                        self.ended = True
                        return
                    if self.idle_limit_s is not None and self._idle_s >= self.idle_limit_s:
                        return
                    if self.on_idle is not None:  # e.g. is the producer still alive?
                        await self.on_idle()
                    yield None
                    continue
                self._idle_s = 0.0
                self.last_id = item[0]
                self.ended = self.is_end(item[1])
                yield item
                if self.ended:
                    return


async def _server_id(client: aioredis.Redis) -> str:
    """Which Redis answers: its run_id is new each time the server starts."""
    info = await client.info("server")
    return str(info["run_id"])


def frame(event_id: str | None, name: str, data: str) -> str:
    """One SSE frame; `data` is JSON on one line."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {data}\n\n"


def event_frame(event_id: str, event: Event) -> str:
    """The frame browsers read: `event:` is the type, `data:` the other fields."""
    return frame(event_id, event.type, event.model_dump_json(exclude={"type"}))


async def relay(
    stream: EventStream[E],
    encode: Callable[[str, E], str],
    *,
    head: Iterable[str] = (),
    closing: str = "",
    lost: str = "",
    keepalive_every_s: float = KEEPALIVE_EVERY_S,
) -> AsyncIterator[str]:
    """The response body: `head`, one `encode`d chunk per event (none for ""), keep-alives while
    idle, and `closing` if the stream reached its end, `lost` if Redis went away."""
    try:
        for chunk in head:
            yield chunk
        idle_s = 0.0
        async for item in stream:
            if item is None:
                idle_s += stream.block_s
                if idle_s >= keepalive_every_s:
                    idle_s = 0.0
                    yield ": keep-alive\n\n"
                continue
            idle_s = 0.0
            chunk = encode(*item)
            if chunk:  # an encoder may skip events (the OpenAI relay skips `status`)
                yield chunk
        if stream.ended and closing:
            yield closing
        elif stream.lost and lost:
            yield lost
    finally:
        await stream.aclose()


def sse_response(body: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


def event_stream_response(
    stream: EventStream[E],
    *,
    retry_ms: int,
    encode: Callable[[str, E], str] = event_frame,
    closing: str = "",
    lost: str = "",
) -> StreamingResponse:
    """An SSE response of typed frames: `retry:` first, so a dropped connection comes back after
    `retry_ms` with Last-Event-ID."""
    head = [f"retry: {retry_ms}\n\n"]
    return sse_response(relay(stream, encode, head=head, closing=closing, lost=lost))
