"""A chat answer in flight when Redis goes away ends with a clear error, not a hang: the SSE
relay says `stream_lost` (in the reader's language), a reconnecting browser is refused (so
EventSource gives up and static/js/chat.js says so), and the stored answer does not stay
"streaming".

Real infer worker, tiny random Llama, a redis-server of the test's own that the test kills."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from sqlalchemy import select

from app.i18n import Translator
from app.models import ChatMessage
from tests.helpers.services import WorkerProcess
from tests.workers.test_chat_serving import new_chat, send
from tests.workers.test_queue_refill import wait_for

HANG_GUARD_S = 120  # only against a stream that never ends; nothing here is timed


def test_a_chat_in_flight_ends_with_a_clear_error_when_redis_goes_away(  # type: ignore[no-untyped-def]
    client, restartable_redis, db_session, tiny_model_dir, tmp_path
) -> None:
    worker = WorkerProcess(env=dict(os.environ), log_path=tmp_path / "infer.log", queues="infer")
    worker.start()
    try:
        model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
        project = client.post("/api/projects", json={"name": "断线", "base_model": model["id"]})
        conversation = new_chat(client, project.json(), max_new_tokens=4000)
        [request_id] = send(client, conversation, "讲一个很长的故事")
        url = f"/api/generations/{request_id}/events"
        got: list[tuple[str, dict[str, Any]]] = []
        last_id: list[str] = []

        def read() -> None:
            with client.stream("GET", url, headers={"Accept-Language": "zh-CN"}) as response:
                kind = None
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        last_id[:] = [line[4:]]
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind:
                        got.append((kind, json.loads(line[6:])))
                        if kind == "token" and sum(k == "token" for k, _ in got) == 1:
                            restartable_redis.kill()  # mid-answer

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(HANG_GUARD_S)
        assert not reader.is_alive(), f"the answer's stream never ended: {got[-3:]}"
        kinds = [kind for kind, _ in got]
        assert "token" in kinds and kinds[-1] == "error", kinds
        error = got[-1][1]
        assert error["code"] == "stream_lost"
        assert error["text"] == Translator("zh-CN")("chat_errors.stream_lost")

        # What the browser does next: reconnect with the last id. Refused, so EventSource stops
        # retrying (and chat.js shows its message) rather than hanging on an empty stream.
        again = {"Last-Event-ID": last_id[0]}
        assert client.get(url, headers=again).status_code >= 400  # Redis still down
        restartable_redis.start()  # back, empty: the answer's request is gone with the old one
        assert client.get(url, headers=again).status_code == 404

        # The answer is not left "streaming": the worker failed it (its writes to the stream
        # failed for good) or, its client having reconnected to the new Redis, finished and
        # saved it; either way the page shows the stored answer, with no stream to follow.
        def answer() -> ChatMessage:
            db_session.expire_all()
            query = select(ChatMessage).where(ChatMessage.request_id == request_id)
            return db_session.scalars(query).one()

        wait_for(lambda: answer().state != "streaming", timeout=HANG_GUARD_S)
        assert answer().state in ("error", "done")
        assert "data-stream" not in client.get(f"/chat/messages/{answer().id}").text
    finally:
        worker.stop()
