"""OpenAI-compatible API: GET /v1/models and POST /v1/chat/completions (streaming or not).

Model ids are `project-slug:vN` (a fine-tuned version), `project-slug:base`, or `project-slug`
(its latest version). Errors use OpenAI's shape so official clients raise the usual exceptions.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from app import events
from app.errors import AppError
from app.redis_keys import generation_stream_key
from app.services import generation
from app.web.deps import CurrentUser, SessionDep, TranslatorDep

router = APIRouter(prefix="/v1", tags=["openai"])


class ChatMessageIn(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = ""


class ChatCompletionRequest(BaseModel):
    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    seed: int | None = None
    frequency_penalty: float | None = None
    stream_options: dict[str, Any] | None = None
    ignore_eos: bool = False  # vLLM's extension, sent with extra_body={"ignore_eos": true}


def openai_error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


@router.get("/models")
def list_models(session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    data = [
        {
            "id": name,
            "object": "model",
            "created": int(project.created_at.timestamp()),
            "owned_by": "tunelab",
        }
        for name, project, _label in generation.public_names(session, user)
    ]
    return {"object": "list", "data": data}


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
    return content or ""


def _params(body: ChatCompletionRequest) -> generation.GenParams:
    stop = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
    values: dict[str, Any] = {"stop": stop, "seed": body.seed, "ignore_eos": body.ignore_eos}
    if body.temperature is not None:
        values["temperature"] = body.temperature
    if body.top_p is not None:
        values["top_p"] = body.top_p
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None:
        values["max_new_tokens"] = limit
    return generation.GenParams(**values)


async def _first_event(
    request_id: str,
) -> tuple[
    AsyncIterator[tuple[str, str, dict[str, Any]] | None], Any, tuple[str, str, dict] | None
]:
    """Open the answer's stream and wait for its first real event (to pick the status code)."""
    client = events.async_client()
    stream = events.follow(client, generation_stream_key(request_id), "0")
    async for item in stream:
        if item is not None and item[1] != "status":
            return stream, client, item
    return stream, client, None


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    request: Request, session: SessionDep, user: CurrentUser, t: TranslatorDep
) -> JSONResponse | StreamingResponse:
    try:
        body = ChatCompletionRequest.model_validate(await request.json())
    except (ValidationError, ValueError) as exc:
        return openai_error(400, f"invalid request body: {exc}", "invalid_request")
    if body.n != 1:
        return openai_error(400, "only n=1 is supported", "unsupported_value", "n")
    try:
        _project, ref = generation.resolve_public_name(session, user, body.model)
        messages = [{"role": m.role, "content": _text(m.content)} for m in body.messages]
        request_id = generation.start(ref, messages, _params(body))
    except AppError as exc:
        status = 404 if exc.status_code == 404 else exc.status_code
        code = "model_not_found" if status == 404 else exc.code
        return openai_error(
            status, t(exc.key, **exc.params), code, "model" if status == 404 else None
        )
    except ValidationError as exc:
        return openai_error(400, str(exc), "invalid_value")
    session.close()

    stream, client, first = await _first_event(request_id)
    if first is not None and first[1] == "error":
        await client.aclose()
        data = first[2]
        status = 400 if data.get("code") == "prompt_too_long" else 500
        return openai_error(
            status,
            data.get("message", "generation failed"),
            data.get("code", "error"),
            "messages" if status == 400 else None,
        )
    completion_id = f"chatcmpl-{request_id}"
    created = int(time.time())

    async def items() -> AsyncIterator[tuple[str, dict[str, Any]]]:
        try:
            if first is not None:
                yield first[1], first[2]
            if first is None or first[1] in ("done", "error"):
                return
            async for item in stream:
                if await request.is_disconnected():
                    generation.cancel(request_id)
                    return
                if item is None or item[1] == "status":
                    continue
                yield item[1], item[2]
                if item[1] in ("done", "error"):
                    return
        finally:
            await client.aclose()

    if not body.stream:
        text, done = [], {}
        async for kind, data in items():
            if kind == "token":
                text.append(data["text"])
            elif kind in ("done", "error"):
                done = data
        usage = _usage(done)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": ref.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(text)},
                        "finish_reason": _finish(done),
                    }
                ],
                "usage": usage,
            }
        )

    include_usage = bool((body.stream_options or {}).get("include_usage"))

    async def sse() -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None, usage: Any = None) -> str:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": ref.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                payload["usage"] = usage
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        yield chunk({"role": "assistant", "content": ""}, None)
        async for kind, data in items():
            if kind == "token":
                yield chunk({"content": data["text"]}, None)
            elif kind in ("done", "error"):
                yield chunk({}, _finish(data))
                if include_usage:
                    tail = {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": ref.name,
                        "choices": [],
                        "usage": _usage(data),
                    }
                    yield f"data: {json.dumps(tail)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        sse(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _finish(done: dict[str, Any]) -> str:
    reason = done.get("finish_reason", "stop")
    return "length" if reason == "length" else "stop"


def _usage(done: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(done.get("prompt_tokens", 0)), int(done.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
