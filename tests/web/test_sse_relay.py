"""The SSE relay (app/web/sse.py) against a real Redis: resuming from Last-Event-ID, keep-alives
while idle, the end conditions, and what happens when the client leaves.

The relay only asks the request whether the client is still there; `Client` below stands in
for that one method, so the tests can decide when the client leaves. Everything else is real:
events are published by the producers' own function into real Redis streams."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis

from app import events
from app.event_types import (
    GENERATION_EVENTS,
    JOB_EVENTS,
    GenerationDone,
    GenerationToken,
    JobLog,
    JobMetric,
    JobStart,
    JobStatusChanged,
    generation_ended,
    job_stream_ended,
)
from app.models import JobStatus
from app.redis_keys import job_stream_key
from app.web.sse import EventStream, event_frame, frame, relay
from tests.helpers.services import reset_app_caches

KEEPALIVE = ": keep-alive\n\n"
HANG_GUARD_S = 30  # only against a relay that never ends; nothing here is timed


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def bus(redis_url: str, tmp_path, monkeypatch) -> Iterator[redis.Redis]:  # type: ignore[no-untyped-def]
    """The app's settings pointed at the test Redis (and a throw-away data dir)."""
    monkeypatch.setenv("TUNELAB_REDIS_URL", redis_url)
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path))
    reset_app_caches()
    yield redis.Redis.from_url(redis_url, decode_responses=True)
    monkeypatch.undo()
    reset_app_caches()


class Client:
    """The request as the relay sees it: gone after `stays_for` checks (never if None)."""

    def __init__(self, stays_for: int | None = None) -> None:
        self.stays_for = stays_for
        self.checks = 0

    async def is_disconnected(self) -> bool:
        self.checks += 1
        return self.stays_for is not None and self.checks > self.stays_for


def new_key() -> str:
    return f"tunelab:test:{uuid.uuid4().hex}:events"


def metric(step: int) -> JobMetric:
    return JobMetric(
        step=step,
        total_steps=5,
        epoch=step / 5,
        loss=2.0 / step,
        lr=1e-4,
        tokens_per_s=100.0,
        elapsed_s=float(step),
    )


def done() -> GenerationDone:
    return GenerationDone(
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=2,
        time_to_first_token_s=0.1,
        tokens_per_s=10.0,
    )


def names(chunks: list[str]) -> list[str]:
    return [c.split("event: ", 1)[1].split("\n", 1)[0] for c in chunks if "event: " in c]


@pytest.mark.anyio
async def test_resume_from_last_event_id_gives_exactly_the_missed_events(bus) -> None:  # type: ignore[no-untyped-def]
    key = new_key()
    ids = [events.publish(bus, key, metric(step)) for step in range(1, 6)]
    ids.append(events.publish(bus, key, JobStatusChanged(status=JobStatus.SUCCEEDED)))
    stream = EventStream(Client(), key, JOB_EVENTS, is_end=job_stream_ended, last_event_id=ids[2])
    with anyio.fail_after(HANG_GUARD_S):
        got = [item async for item in stream if item is not None]
    assert [event_id for event_id, _ in got] == ids[3:]
    assert [e.step for _, e in got if isinstance(e, JobMetric)] == [4, 5]
    assert stream.ended


@pytest.mark.anyio
async def test_keep_alive_while_idle_then_ends_on_the_final_status(bus) -> None:  # type: ignore[no-untyped-def]
    key = new_key()
    events.publish(bus, key, JobStart(total_steps=5))
    stream = EventStream(Client(), key, JOB_EVENTS, is_end=job_stream_ended, block_ms=50)
    body = relay(
        stream,
        event_frame,
        head=["retry: 10\n\n"],
        closing=frame(None, "done", "{}"),
        keepalive_every_s=0.1,
    )
    chunks: list[str] = []
    with anyio.fail_after(HANG_GUARD_S):
        async for chunk in body:
            chunks.append(chunk)
            if chunk == KEEPALIVE and chunks.count(KEEPALIVE) == 1:
                # The job speaks again only after the relay has kept the idle stream alive.
                events.publish(bus, key, JobLog(line="resumed"))
                events.publish(bus, key, JobStatusChanged(status=JobStatus.CANCELLED))
                events.publish(bus, key, JobLog(line="after the end: never relayed"))
    assert chunks[0] == "retry: 10\n\n"
    assert names(chunks) == ["start", "log", "status", "done"]
    assert chunks.index(KEEPALIVE) == 2  # after `start`, before the later events
    status = json.loads(chunks[-2].split("data: ", 1)[1])
    assert status["status"] == "cancelled"
    assert chunks[-1] == "event: done\ndata: {}\n\n"


@pytest.mark.anyio
async def test_a_finished_producer_ends_once_caught_up(bus) -> None:  # type: ignore[no-untyped-def]
    """A job that ended before the page opened, whose final status was trimmed or lost."""
    key = new_key()
    events.publish(bus, key, metric(1))
    bus.xadd(key, {"type": "bogus", "data": "{}"})  # a foreign entry is skipped, not fatal
    events.publish(bus, key, metric(2))
    stream = EventStream(
        Client(), key, JOB_EVENTS, is_end=job_stream_ended, producer_done=True, block_ms=50
    )
    with anyio.fail_after(HANG_GUARD_S):
        chunks = [c async for c in relay(stream, event_frame, closing="event: done\n\n")]
    assert names(chunks) == ["metric", "metric", "done"]
    assert stream.ended


@pytest.mark.anyio
async def test_a_client_that_leaves_abandons_the_stream(bus) -> None:  # type: ignore[no-untyped-def]
    key = new_key()
    for piece in "abcdef":
        events.publish(bus, key, GenerationToken(text=piece))
    abandoned: list[str] = []
    stream = EventStream(
        Client(stays_for=2),
        key,
        GENERATION_EVENTS,
        is_end=generation_ended,
        on_abandon=lambda: abandoned.append(key),
    )
    with anyio.fail_after(HANG_GUARD_S):
        got = [item async for item in stream]
    assert [e.text for _, e in got] == ["a", "b"]  # type: ignore[union-attr]
    assert abandoned == [key] and not stream.ended


@pytest.mark.anyio
async def test_an_answer_that_ends_is_not_abandoned_and_idle_ones_are(bus) -> None:  # type: ignore[no-untyped-def]
    key = new_key()
    events.publish(bus, key, GenerationToken(text="hi"))
    events.publish(bus, key, done())
    abandoned: list[str] = []

    def follow(key: str) -> EventStream:  # type: ignore[type-arg]
        return EventStream(
            Client(),
            key,
            GENERATION_EVENTS,
            is_end=generation_ended,
            idle_limit_s=0.2,
            on_abandon=lambda: abandoned.append(key),
            block_ms=50,
        )

    with anyio.fail_after(HANG_GUARD_S):
        finished = [e.type async for item in follow(key) if item for e in [item[1]]]
        assert finished == ["token", "done"] and abandoned == []
        silent = new_key()
        assert [item async for item in follow(silent)] == [None, None, None]
    assert abandoned == [silent]


def test_job_events_route_resumes_from_last_event_id(client, platform_env) -> None:  # type: ignore[no-untyped-def]
    """Through the real route: scope check, `retry:`, SSE ids, the missed events, then `done`."""
    project = client.post("/api/projects", json={"name": "relay"}).json()
    rows = [{"instruction": f"问题 {i}", "output": f"答案 {i}"} for i in range(8)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("d.jsonl", content)}
    ).json()
    job = client.post(
        f"/api/projects/{project['id']}/jobs", json={"dataset_id": dataset["id"]}
    ).json()
    key = job_stream_key(job["id"])
    bus = redis.Redis.from_url(platform_env["TUNELAB_REDIS_URL"], decode_responses=True)
    ids = [events.publish(bus, key, metric(step)) for step in (1, 2, 3)]
    ids.append(events.publish(bus, key, JobStatusChanged(status=JobStatus.SUCCEEDED)))

    lines: list[str] = []
    headers = {"Last-Event-ID": ids[0]}
    with client.stream("GET", f"/api/jobs/{job['id']}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = list(response.iter_lines())
    assert lines[0] == "retry: 2000"
    assert [line[4:] for line in lines if line.startswith("id: ")] == ids[1:]
    sent = [line[7:] for line in lines if line.startswith("event: ")]
    assert sent == ["metric", "metric", "status", "done"]
    steps = [json.loads(line[6:]).get("step") for line in lines if line.startswith("data: ")]
    assert steps[:2] == [2, 3]
    assert client.get("/api/jobs/999999/events").status_code == 404
