"""`infer` queue: answer one generation request with the process's long-lived engine.

The engine (workers.inference) keeps base models loaded and batches concurrent requests, also
across adapters, so this task only feeds it a request and relays its events: tokens to the
request's Redis stream, the final answer and its statistics to the chat message row. The main
worker runs a thread pool, so several of these tasks run at once and share one engine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from redis import Redis

from app import events
from app.config import get_settings
from app.db import update_row
from app.event_types import (
    ChatErrorCode,
    GenerationDone,
    GenerationError,
    GenerationEvent,
    GenerationStatus,
    GenerationToken,
)
from app.models import ChatMessage
from app.queue import TaskName
from app.redis_client import get_redis
from app.redis_keys import (
    generation_cancel_key,
    generation_owner_key,
    generation_request_key,
    generation_stream_key,
    worker_heartbeat_key,
)
from app.services.generation_liveness import owner_record
from workers.celery_app import celery_app
from workers.inference import (
    DoneEvent,
    GenerationRequest,
    InferenceError,
    PromptTooLong,
    Scheduler,
)
from workers.ml.errors import ModelLoadError
from workers.tasks.chat_engines import ChatEngines

logger = logging.getLogger(__name__)
STREAM_TTL_S = 3600
MEMORY_BUDGET_BYTES = 8 * 1024**3

_engines: ChatEngines | None = None
_lock = threading.Lock()


def engines() -> ChatEngines:
    """One set of engines per worker process, shared by the pool's threads."""
    global _engines
    with _lock:
        if _engines is None:
            settings = get_settings()
            _engines = ChatEngines(
                settings.data_dir,
                MEMORY_BUDGET_BYTES,
                settings.chat_engine,
                threads=settings.chat_threads,
            )
        return _engines


def scheduler() -> Scheduler:
    """The transformers-based engine's scheduler (what answers while a GGUF is built)."""
    return engines().scheduler


def too_long_error(exc: PromptTooLong) -> GenerationError:
    return GenerationError.of(
        ChatErrorCode.PROMPT_TOO_LONG,
        prompt_tokens=exc.prompt_tokens,
        over_by=exc.over_by,
        limit=exc.limit,
    )


def model_unavailable(error: Exception | None) -> bool:
    """llama.cpp's engine reports a model it cannot find or load in the DoneEvent."""
    try:  # llama.cpp's package imports llama-cpp-python, which a worker may lack
        from workers.inference.llamacpp.errors import ModelLoadFailed, UnknownModel
    except ImportError:
        return False
    return isinstance(error, UnknownModel | ModelLoadFailed)


def publish_token(redis: Redis, key: str, text: str, cancel_key: str) -> bool:
    """Append one token to the answer's stream and say whether a cancel was asked for.

    One round trip per token (XADD, EXPIRE and the cancel check pipelined): with eight chats
    streaming, three separate calls per token cost the pool threads measurable decode speed.
    """
    pipe = redis.pipeline(transaction=False)
    events.publish(pipe, key, GenerationToken(text=text), ttl_s=STREAM_TTL_S)
    pipe.exists(cancel_key)
    return bool(pipe.execute()[-1])


def _save(message_id: int | None, **fields: Any) -> None:
    update_row(ChatMessage, message_id, **fields)


@celery_app.task(name=TaskName.GENERATE)
def generate(request_id: str) -> None:
    redis = get_redis()
    raw = redis.get(generation_request_key(request_id))
    key = generation_stream_key(request_id)

    def emit(event: GenerationEvent) -> None:
        events.publish(redis, key, event, ttl_s=STREAM_TTL_S)

    def fail(message_id: int | None, error: GenerationError) -> None:
        # The row first: the page reloads the answer on the error event and must find it stored
        # (English in `content` for logs; the page renders the code and params).
        try:
            _save(
                message_id,
                state="error",
                content=error.message,
                error_code=error.code.value,
                error_params=error.params,
            )
        finally:
            emit(error)

    if raw is None:
        emit(GenerationError.of(ChatErrorCode.EXPIRED))
        return
    request = json.loads(raw)
    owner_key = _record_owner(redis, request_id)
    try:
        _answer(request_id, request, redis, emit, fail)
    finally:
        if owner_key is not None:  # answered (or failed) in the stream: nothing to watch
            with contextlib.suppress(Exception):  # it expires anyway
                redis.delete(owner_key)


def _record_owner(redis: Redis, request_id: str) -> str | None:
    """Say that this worker answers the request: while it does, the relays watch its heartbeat
    and end the answer with an error if it dies (app/services/generation_liveness.py)."""
    hostname = str(generate.request.hostname or "")
    if not hostname:  # called outside a worker
        return None
    key = generation_owner_key(request_id)
    try:
        beat = redis.get(worker_heartbeat_key(hostname))
        record = owner_record(json.loads(beat) if beat else None, hostname)
        redis.set(key, json.dumps(record), ex=STREAM_TTL_S)
    except Exception:  # the answer matters more than its watch
        logger.warning("generation %s: could not record its worker", request_id, exc_info=True)
    return key


def _answer(
    request_id: str,
    request: dict[str, Any],
    redis: Redis,
    emit: Callable[[GenerationEvent], None],
    fail: Callable[[int | None, GenerationError], None],
) -> None:
    key = generation_stream_key(request_id)
    model, params, message_id = request["model"], request["params"], request.get("message_id")
    text: list[str] = []
    done: DoneEvent | None = None
    try:
        chat = engines()
        route = chat.route(model, on_wait=lambda: emit(GenerationStatus(state="loading")))
        if route.engine == "transformers" and chat.needs_loading(model):
            emit(GenerationStatus(state="loading"))
        handle = route.submit(
            GenerationRequest(
                request_id=request_id,
                messages=request["messages"],
                template=model.get("template"),
                **route.request_fields,
                **params,
            )
        )
        cancel_key = generation_cancel_key(request_id)
        for event in handle:
            if isinstance(event, DoneEvent):
                done = event
                break
            if not text:
                emit(GenerationStatus(state="generating"))
            text.append(event.text)
            if publish_token(redis, key, event.text, cancel_key):
                handle.cancel()
    except (InferenceError, ModelLoadError) as exc:
        fail(message_id, GenerationError.of(ChatErrorCode.MODEL_UNAVAILABLE, detail=str(exc)))
        return
    except Exception as exc:
        logger.exception("generation %s failed", request_id)
        detail = f"{type(exc).__name__}: {exc}"
        fail(message_id, GenerationError.of(ChatErrorCode.GENERIC, detail=detail))
        raise
    if done is None or done.finish_reason == "error":
        error = done.error if done is not None else None
        if isinstance(error, PromptTooLong):
            fail(message_id, too_long_error(error))
        elif model_unavailable(error):
            # llama.cpp reports these in the DoneEvent, not as exceptions.
            detail = str(error)
            fail(message_id, GenerationError.of(ChatErrorCode.MODEL_UNAVAILABLE, detail=detail))
        else:
            detail = str(error or "the generation ended without a result")
            fail(message_id, GenerationError.of(ChatErrorCode.GENERIC, detail=detail))
        return
    finished = GenerationDone(
        finish_reason=done.finish_reason,
        prompt_tokens=done.prompt_tokens,
        completion_tokens=done.completion_tokens,
        time_to_first_token_s=done.time_to_first_token_s or 0.0,
        tokens_per_s=done.tokens_per_s,
        engine=route.engine,
        precision=route.precision,
    )
    state = "stopped" if done.finish_reason == "cancelled" else "done"
    _save(message_id, state=state, content="".join(text), stats=finished.stats())
    emit(finished)
