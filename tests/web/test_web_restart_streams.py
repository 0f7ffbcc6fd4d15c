"""The web server restarts while pages stream: a job page's SSE and a chat answer's SSE reconnect
with Last-Event-ID (as a browser's EventSource does after `retry:`) and the reader ends up with
exactly the events that were published, in order, once each.

The web is a real `tunelab web` process (app.supervisor.web_command: uvicorn) killed and started
again on the same port: SIGKILL (a crash) and SIGTERM (a restart by systemd, compose or
`tunelab up`, which lets requests wind down first). The test writes the events into Redis as the
worker would (workers/reporting.py, workers/tasks/infer.py), so it knows the full sequence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app import events
from app.db import session_scope
from app.embedded_redis import free_port
from app.event_types import (
    GenerationDone,
    GenerationStatus,
    GenerationToken,
    JobStart,
    JobStatusChanged,
)
from app.models import ChatMessage, JobStatus, User
from app.redis_client import get_redis
from app.redis_keys import (
    generation_cancel_key,
    generation_request_key,
    generation_stream_key,
    job_stream_key,
)
from app.supervisor import web_command
from tests.helpers.projects import project_with_rows
from tests.web.test_sse_relay import metric
from tests.workers.test_training_jobs import ROWS

pytestmark = pytest.mark.sqlite_only  # the streams live in Redis; the database is not what restarts

HANG_GUARD_S = 120  # only against a stream that never ends; nothing here is timed
# Events per stream, PACE_S apart: the stream lasts longer than a graceful shutdown (uvicorn's
# --timeout-graceful-shutdown 5) plus a start, so the restart falls in its middle.
EVENTS, PACE_S, RESTART_AFTER = 150, 0.1, 20


class WebServer:
    """`tunelab web` as a process of its own, on one port across restarts."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarting: threading.Thread | None = None

    def restart_soon(self, how: signal.Signals) -> None:
        """Stop (`how`) and start again, from a thread: the caller goes on reading."""
        self.restarting = threading.Thread(target=lambda: (self.stop(how), self.start()))
        self.restarting.start()

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                web_command("127.0.0.1", self.port),
                env=dict(os.environ),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the web did not start: {self.log.read_text()[-3000:]}")

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, how)
            self.proc.wait(30)


@pytest.fixture
def web(platform_env, tmp_path) -> Iterator[WebServer]:  # type: ignore[no-untyped-def]
    server = WebServer(tmp_path / "web.log")
    server.start()
    yield server
    if server.restarting is not None:  # a failed test may leave one under way: not a stray web
        server.restarting.join(120)
    server.stop(signal.SIGKILL)


class EventSourceLike:
    """Reads an SSE URL as a browser's EventSource does: on a dropped connection it waits the
    server's `retry:` and reconnects with Last-Event-ID, until the stream's last event."""

    def __init__(self, url: str, last_event: str) -> None:
        self.url = url
        self.last_event = last_event
        self.got: list[tuple[str | None, str, dict[str, Any]]] = []  # (id, event, data)
        self.last_id: str | None = None
        self.retry_s = 3.0
        self.connections = 0
        self.on_event: Callable[[int], None] = lambda n: None

    def run(self) -> None:
        while True:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            try:
                with httpx.stream("GET", self.url, headers=headers, timeout=30) as response:
                    response.raise_for_status()
                    self.connections += 1
                    if self._read(response):
                        return
            except (httpx.TransportError, httpx.HTTPStatusError):
                pass  # the server is away: retry as EventSource does
            time.sleep(self.retry_s)

    def _read(self, response: httpx.Response) -> bool:
        event_id, kind = None, None
        for line in response.iter_lines():
            if line.startswith("retry: "):
                self.retry_s = int(line[7:]) / 1000
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                self.got.append((event_id, kind, json.loads(line[6:])))
                if event_id:
                    self.last_id = event_id
                self.on_event(len(self.got))
                if kind == self.last_event:
                    return True
                event_id, kind = None, None
        return False


def publish_steadily(
    key: str, make: Callable[[int], Any], count: int
) -> tuple[threading.Thread, list[str]]:
    """Append `count` events to stream `key` from a thread, as a worker does, PACE_S apart."""
    ids: list[str] = []

    def run() -> None:
        for n in range(count):
            ids.append(events.publish(get_redis(), key, make(n)))
            time.sleep(PACE_S)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, ids


def follow_across_a_restart(
    web: WebServer, path: str, last_event: str, how: signal.Signals, publish: Callable[[], Any]
) -> EventSourceLike:
    """Read `path`, restart the web (`how`) after RESTART_AFTER events were read, read on."""
    reader = EventSourceLike(f"{web.url}{path}", last_event)
    restarted = threading.Event()

    def restart_once(n: int) -> None:
        if n == RESTART_AFTER and not restarted.is_set():
            restarted.set()
            web.restart_soon(how)

    reader.on_event = restart_once
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    publish()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), f"the stream never ended: {reader.got[-3:]}"
    assert restarted.is_set() and reader.connections >= 2
    return reader


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "restart"])
def test_a_job_page_stream_survives_a_web_restart(client, web, how) -> None:  # type: ignore[no-untyped-def]
    project, dataset = project_with_rows(client, ROWS, "重启")
    job = client.post(f"/api/projects/{project['id']}/jobs", json={"dataset_id": dataset["id"]})
    key = job_stream_key(job.json()["id"])
    total = EVENTS - 2

    def make(n: int) -> Any:
        if n == 0:
            return JobStart(total_steps=5)
        if n == EVENTS - 1:
            return JobStatusChanged(status=JobStatus.SUCCEEDED)
        return metric(n)  # its total_steps is the helper's; the relay does not check it

    published: list[str] = []

    def publish() -> None:
        thread, ids = publish_steadily(key, make, EVENTS)
        thread.join(HANG_GUARD_S)
        published.extend(ids)

    reader = follow_across_a_restart(
        web, f"/api/jobs/{job.json()['id']}/events", "done", how, publish
    )
    relayed = [(event_id, kind) for event_id, kind, _data in reader.got if event_id]
    assert [event_id for event_id, _ in relayed] == published  # all, in order, once each
    assert [kind for _, kind in relayed] == ["start"] + ["metric"] * total + ["status"]
    steps = [data["step"] for _id, kind, data in reader.got if kind == "metric"]
    assert steps == list(range(1, total + 1))
    assert reader.got[-1][1] == "done"


def local_user_id() -> int:
    with session_scope() as session:
        return int(session.scalars(select(User.id)).one())


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "restart"])
def test_a_chat_answer_survives_a_web_restart(client, web, how) -> None:  # type: ignore[no-untyped-def]
    """The answer goes on while the web restarts: a restart must not stop it (the relay that
    went away must not count as a reader who left), and the reader gets every token once."""
    project = client.post("/api/projects", json={"name": "重启聊天"}).json()
    conversation = client.post(
        f"/projects/{project['id']}/chat", data={"model": "base"}, follow_redirects=False
    ).headers["location"]
    request_id = os.urandom(16).hex()
    with session_scope() as session:
        session.add(
            ChatMessage(
                conversation_id=int(conversation.rsplit("/", 1)[1]),
                role="assistant",
                model="base",
                turn=1,
                state="streaming",
                request_id=request_id,
            )
        )
    owner = {"owner_id": local_user_id(), "message_id": None}
    get_redis().set(generation_request_key(request_id), json.dumps(owner), ex=600)
    key = generation_stream_key(request_id)
    stopped_at: list[int] = []

    def make(n: int) -> Any:
        if n == 0:
            return GenerationStatus(state="generating")
        if n == EVENTS - 1:
            return GenerationDone(
                finish_reason="stop",
                prompt_tokens=3,
                completion_tokens=n - 1,
                time_to_first_token_s=0.1,
                tokens_per_s=50.0,
            )
        # The worker checks the cancel key before every token (workers/tasks/infer.py).
        if get_redis().exists(generation_cancel_key(request_id)) and not stopped_at:
            stopped_at.append(n)
        return GenerationToken(text=f"字{n} ")

    published: list[str] = []

    def publish() -> None:
        thread, ids = publish_steadily(key, make, EVENTS)
        thread.join(HANG_GUARD_S)
        published.extend(ids)

    path = f"/api/generations/{request_id}/events"
    reader = follow_across_a_restart(web, path, "done", how, publish)
    assert stopped_at == [], f"the restart cancelled the answer at token {stopped_at}"
    assert [event_id for event_id, _kind, _data in reader.got] == published
    text = "".join(data["text"] for _id, kind, data in reader.got if kind == "token")
    assert text == "".join(f"字{n} " for n in range(1, EVENTS - 1))
