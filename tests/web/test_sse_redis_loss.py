"""The SSE relay (app/web/sse.py) when Redis goes away under it: a stream ends with the route's
`lost` chunk instead of hanging or failing the response; a Redis that restarted (empty) counts
as gone, since what the stream held is gone with it; a connection that merely dropped, to the
same Redis, carries on from the last id with nothing lost or doubled.

Redis is a real redis-server of the test's own, killed and started again; `Client` (the
request's `is_disconnected`) is the only stand-in, as in test_sse_relay.py."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
import redis

from app import events
from app.event_types import GENERATION_EVENTS, GenerationToken, generation_ended
from app.web.sse import EventStream, event_frame, relay
from tests.helpers.services import RestartableRedis, reset_app_caches
from tests.web.test_sse_relay import HANG_GUARD_S, Client, done, names, new_key

LOST = "event: error\ndata: lost\n\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[RestartableRedis]:  # type: ignore[no-untyped-def]
    """The app's settings pointed at a Redis this test may kill and restart."""
    server = RestartableRedis(tmp_path / "redis")
    server.start()
    monkeypatch.setenv("TUNELAB_REDIS_URL", server.url)
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path))
    reset_app_caches()
    yield server
    server.stop()
    monkeypatch.undo()
    reset_app_caches()


def bus(server: RestartableRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def answer_stream(key: str, abandoned: list[str]) -> EventStream:  # type: ignore[type-arg]
    def cancel() -> None:  # as generation.cancel does: it needs Redis too
        abandoned.append(key)
        redis.Redis.from_url(events.get_settings().broker_url).set(f"{key}:cancel", "1")

    return EventStream(
        Client(),
        key,
        GENERATION_EVENTS,
        is_end=generation_ended,
        idle_limit_s=600,
        on_abandon=cancel,
        block_ms=100,
    )


async def relay_until(
    stream: EventStream,  # type: ignore[type-arg]
    after_first_token: object,
) -> list[str]:
    """The relay's chunks; `after_first_token()` runs once, when the first token was relayed."""
    chunks: list[str] = []
    with anyio.fail_after(HANG_GUARD_S):  # only against a relay that never ends
        async for chunk in relay(stream, event_frame, closing="event: end\n\n", lost=LOST):
            chunks.append(chunk)
            if names(chunks) == ["token"]:
                after_first_token()  # type: ignore[operator]
    return chunks


@pytest.mark.anyio
async def test_redis_gone_ends_a_chat_with_the_lost_chunk(server) -> None:  # type: ignore[no-untyped-def]
    key, abandoned = new_key(), []
    events.publish(bus(server), key, GenerationToken(text="Hel"))
    stream = answer_stream(key, abandoned)
    chunks = await relay_until(stream, server.kill)
    assert names(chunks) == ["token", "error"] and chunks[-1] == LOST
    assert stream.lost and not stream.ended
    assert abandoned == [key]  # tried to cancel the answer; Redis being away did not break it


@pytest.mark.anyio
async def test_a_restarted_redis_ends_a_chat_too(server) -> None:  # type: ignore[no-untyped-def]
    """Back at once, but empty: the stream's earlier entries and its ids are gone."""
    key, abandoned = new_key(), []
    events.publish(bus(server), key, GenerationToken(text="Hel"))
    stream = answer_stream(key, abandoned)

    def restart_then_write() -> None:
        server.restart()
        events.publish(bus(server), key, GenerationToken(text="lo"))  # a worker that went on

    chunks = await relay_until(stream, restart_then_write)
    assert names(chunks) == ["token", "error"] and chunks[-1] == LOST
    assert stream.lost


@pytest.mark.anyio
async def test_a_dropped_connection_to_the_same_redis_loses_nothing(server) -> None:  # type: ignore[no-untyped-def]
    key, abandoned = new_key(), []
    client = bus(server)
    events.publish(client, key, GenerationToken(text="a"))
    stream = answer_stream(key, abandoned)

    def drop_connections_then_write() -> None:
        # Every other client's connection is cut, the relay's included; Redis stays up.
        client.client_kill_filter(_type="normal", skipme=True)
        for piece in "bcd":
            events.publish(client, key, GenerationToken(text=piece))
        events.publish(client, key, done())

    chunks = await relay_until(stream, drop_connections_then_write)
    assert names(chunks) == ["token"] * 4 + ["done", "end"]
    texts = [c.split('"text":"', 1)[1].split('"', 1)[0] for c in chunks if "event: token" in c]
    assert texts == ["a", "b", "c", "d"]
    assert stream.ended and not stream.lost and abandoned == []


@pytest.mark.anyio
async def test_redis_down_when_the_stream_starts(server) -> None:  # type: ignore[no-untyped-def]
    key, abandoned = new_key(), []
    server.kill()
    stream = answer_stream(key, abandoned)
    with anyio.fail_after(HANG_GUARD_S):
        chunks = [c async for c in relay(stream, event_frame, head=["retry: 1\n\n"], lost=LOST)]
    assert chunks == ["retry: 1\n\n", LOST] and stream.lost
