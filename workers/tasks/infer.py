"""`infer` queue: answer one generation request with the process's long-lived engine.

The engine (workers.inference) keeps base models loaded and batches concurrent requests, also
across adapters, so this task only feeds it a request and relays its events: tokens to the
request's Redis stream, the final answer and its statistics to the chat message row. The main
worker runs a thread pool, so several of these tasks run at once and share one engine.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from redis import Redis

from app import events
from app.config import get_settings
from app.db import update_row
from app.models import ChatMessage
from app.queue import TaskName
from app.redis_client import get_redis
from app.redis_keys import (
    generation_cancel_key,
    generation_request_key,
    generation_stream_key,
)
from workers.celery_app import celery_app
from workers.inference import (
    DoneEvent,
    GenerationRequest,
    InferenceEngine,
    InferenceError,
    PromptTooLong,
    Scheduler,
)
from workers.ml.errors import ModelLoadError

logger = logging.getLogger(__name__)
STREAM_TTL_S = 3600
MEMORY_BUDGET_BYTES = 8 * 1024**3

_scheduler: Scheduler | None = None
_lock = threading.Lock()


def scheduler() -> Scheduler:
    """One engine and scheduler per worker process, shared by the pool's threads."""
    global _scheduler
    with _lock:
        if _scheduler is None:
            engine = InferenceEngine(get_settings().data_dir, MEMORY_BUDGET_BYTES)
            _scheduler = Scheduler(engine).start()
        return _scheduler


def too_long_message(exc: PromptTooLong) -> str:
    return (
        f"The conversation is {exc.prompt_tokens} tokens long, {exc.over_by} over the "
        f"model's limit of {exc.limit}: shorten it or start a new conversation."
    )


def publish_token(redis: Redis, key: str, text: str, cancel_key: str) -> bool:
    """Append one token to the answer's stream and say whether a cancel was asked for.

    One round trip per token (XADD, EXPIRE and the cancel check pipelined): with eight chats
    streaming, three separate calls per token cost the pool threads measurable decode speed.
    """
    pipe = redis.pipeline(transaction=False)
    events.publish_to(pipe, key, "token", {"text": text}, ttl_s=STREAM_TTL_S)
    pipe.exists(cancel_key)
    return bool(pipe.execute()[-1])


def _save(message_id: int | None, **fields: Any) -> None:
    update_row(ChatMessage, message_id, **fields)


@celery_app.task(name=TaskName.GENERATE)
def generate(request_id: str) -> None:
    redis = get_redis()
    raw = redis.get(generation_request_key(request_id))
    key = generation_stream_key(request_id)

    def emit(kind: str, data: dict[str, Any]) -> None:
        events.publish_to(redis, key, kind, data, ttl_s=STREAM_TTL_S)

    if raw is None:
        emit("error", {"code": "expired", "message": "the request expired before a worker took it"})
        return
    request = json.loads(raw)
    model, params, message_id = request["model"], request["params"], request.get("message_id")
    text: list[str] = []
    done: DoneEvent | None = None
    try:
        sched = scheduler()
        if model["base"] not in sched.engine.loaded_bases():
            emit("status", {"state": "loading"})
        if model["adapter_id"]:
            sched.engine.register_adapter(model["base"], model["adapter_id"], model["adapter_path"])
        handle = sched.submit(
            GenerationRequest(
                request_id=request_id,
                base_id=model["base"],
                adapter_id=model["adapter_id"],
                messages=request["messages"],
                template=model.get("template"),
                **params,
            )
        )
        cancel_key = generation_cancel_key(request_id)
        for event in handle:
            if isinstance(event, DoneEvent):
                done = event
                break
            if not text:
                emit("status", {"state": "generating"})
            text.append(event.text)
            if publish_token(redis, key, event.text, cancel_key):
                handle.cancel()
    except (InferenceError, ModelLoadError) as exc:
        emit("error", {"code": "model_unavailable", "message": str(exc)})
        _save(message_id, state="error", content=str(exc))
        return
    except Exception as exc:
        logger.exception("generation %s failed", request_id)
        emit("error", {"code": "error", "message": f"{type(exc).__name__}: {exc}"})
        _save(message_id, state="error", content=f"{type(exc).__name__}: {exc}")
        raise
    if done is None or done.finish_reason == "error":
        error = done.error if done is not None else None
        if isinstance(error, PromptTooLong):
            code, message = "prompt_too_long", too_long_message(error)
        else:
            code, message = "error", str(error or "the generation ended without a result")
        emit("error", {"code": code, "message": message})
        _save(message_id, state="error", content=message)
        return
    stats = {
        "finish_reason": done.finish_reason,
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "time_to_first_token_s": done.time_to_first_token_s or 0.0,
        "tokens_per_s": done.tokens_per_s,
    }
    state = "stopped" if done.finish_reason == "cancelled" else "done"
    _save(message_id, state=state, content="".join(text), stats=stats)
    emit("done", stats)
