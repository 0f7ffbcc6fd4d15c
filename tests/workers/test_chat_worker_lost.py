"""A chat worker that dies while writing an answer: the answer ends with `chat_worker_lost`
within the worker heartbeat's lifetime (3 heartbeats; 3 s here) instead of waiting in the
browser until the relay's 10-minute idle limit, the message row says so, and a reader that
comes back later (a reloaded page) ends on the same error.

The worker is real (a thread pool on `infer`, as `tunelab up` starts it) and is SIGKILLed, the
whole process group, once the first tokens arrived.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from app.models import ChatMessage, Conversation
from tests.helpers.services import WorkerProcess
from tests.workers.test_chat_serving import new_chat, read_stream, send

# Without the check, nothing arrives after the kill but keep-alives (every 15 s): a stream still
# open this long after it is a hang, not a slow check.
GIVE_UP_S = 45


def long_context_model(tiny_model_dir: Path, folder: Path) -> Path:
    """The tiny model with a context long enough for an 8192-token answer (RoPE needs no new
    weights), so the answer is still being written when the worker dies."""
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 16384
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_answer_ends_with_an_error_when_its_worker_dies(  # type: ignore[no-untyped-def]
    client, platform_env, db_session, tiny_model_dir, tmp_path
) -> None:
    base = long_context_model(tiny_model_dir, tmp_path / "long")
    model = client.post("/api/models", json={"path": str(base)}).json()
    project = client.post("/api/projects", json={"name": "lost", "base_model": model["id"]}).json()
    env = dict(os.environ, **platform_env, TUNELAB_CHAT_ENGINE="transformers")
    worker = WorkerProcess(env=env, log_path=tmp_path / "chat.log", queues="infer")
    worker.start()
    try:
        conversation_id = new_chat(client, project, max_new_tokens=8192)
        conversation = db_session.get(Conversation, conversation_id)
        conversation.params = {**conversation.params, "ignore_eos": True}  # no early stop
        db_session.commit()
        [request_id] = send(client, conversation_id, "讲一个很长的故事。")

        events: list[tuple[str, dict]] = []
        killed_at = None
        with client.stream("GET", f"/api/generations/{request_id}/events") as response:
            kind = None
            for line in response.iter_lines():  # keep-alive comments wake this loop too
                if killed_at is not None and time.monotonic() - killed_at > GIVE_UP_S:
                    break
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind:
                    events.append((kind, json.loads(line[6:])))
                    if kind == "token" and killed_at is None:
                        worker.kill()  # mid-answer: tokens came, `done` has not
                        killed_at = time.monotonic()
                    if kind in ("done", "error"):
                        break
    finally:
        worker.stop()

    kinds = [kind for kind, _ in events]
    assert "token" in kinds and "done" not in kinds, kinds[-5:]
    assert kinds[-1] == "error", f"no error {GIVE_UP_S} s after the worker died: {kinds[-5:]}"
    error = events[-1][1]
    assert error["code"] == "chat_worker_lost"
    assert "stopped while writing this answer" in error["text"]

    # The row is failed, so a reloaded page shows the error instead of a spinner.
    db_session.expire_all()
    answer = db_session.query(ChatMessage).filter_by(request_id=request_id).one()
    assert (answer.state, answer.error_code) == ("error", "chat_worker_lost")
    page = client.get(f"/chat/messages/{answer.id}", headers={"Accept-Language": "zh-CN"})
    assert "对话工作进程停止了" in page.text
    # A reader that reconnects from the start ends on the same error, once.
    again = read_stream(client, request_id)
    assert [kind for kind, _ in again].count("error") == 1 and again[-1][0] == "error"
