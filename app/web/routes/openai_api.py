"""OpenAI-compatible API: GET /v1/models and POST /v1/chat/completions (streaming or not).

Model ids are `project-slug:vN` (a fine-tuned version), `project-slug:base`, or `project-slug`
(its latest version). Errors use OpenAI's shape so official clients raise the usual exceptions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from app.errors import AppError
from app.event_types import (
    GENERATION_EVENTS,
    ChatErrorCode,
    GenerationDone,
    GenerationError,
    GenerationEvent,
    GenerationStatus,
    GenerationToken,
    generation_ended,
)
from app.i18n import Translator
from app.redis_keys import generation_stream_key
from app.services import generation, generation_liveness, text_limits
from app.web.deps import CurrentUser, SessionDep, TranslatorDep
from app.web.sse import EventStream, relay, sse_response

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


# Redis went away or restarted while the answer streamed (app/web/sse.py).
LOST = GenerationError.of(ChatErrorCode.STREAM_LOST)


def _error_body(
    message: str, code: str, param: str | None = None, kind: str = "server_error"
) -> dict[str, Any]:
    return {"message": message, "type": kind, "param": param, "code": code}


def openai_error(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": _error_body(message, code, param, kind)}, status_code=status)


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


def _over_limits(body: ChatCompletionRequest, t: Translator) -> JSONResponse | None:
    """Too many messages, or more text than any model takes: refused before anything is queued
    (400, as OpenAI answers an invalid request)."""
    count = len(body.messages)
    if count > text_limits.MESSAGES_MAX:
        message = t("errors.too_many_messages", got=count, max=text_limits.MESSAGES_MAX)
        return openai_error(400, message, "too_many_messages", "messages")
    chars = sum(len(_text(m.content)) for m in body.messages)
    if chars > text_limits.PROMPT_MAX_CHARS:
        message = t("errors.prompt_too_long_chars", got=chars, max=text_limits.PROMPT_MAX_CHARS)
        return openai_error(400, message, "prompt_too_long", "messages")
    return None


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


async def _first_event(stream: EventStream[GenerationEvent]) -> GenerationEvent | None:
    """Wait for the answer's first token, done or error (it picks the status code)."""
    async for item in stream:
        if item is not None and not isinstance(item[1], GenerationStatus):
            return item[1]
    return None


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
    if (too_much := _over_limits(body, t)) is not None:
        return too_much
    try:
        _project, ref = generation.resolve_public_name(session, user, body.model)
        messages = [{"role": m.role, "content": _text(m.content)} for m in body.messages]
        request_id = generation.start(ref, messages, _params(body), owner_id=user.id)
    except AppError as exc:
        status = 404 if exc.status_code == 404 else exc.status_code
        code = "model_not_found" if status == 404 else exc.code
        return openai_error(
            status, t(exc.key, **exc.params), code, "model" if status == 404 else None
        )
    except ValidationError as exc:
        return openai_error(400, str(exc), "invalid_value")
    session.close()

    stream = EventStream(
        request,
        generation_stream_key(request_id),
        GENERATION_EVENTS,
        is_end=generation_ended,
        idle_limit_s=generation.IDLE_LIMIT_S,
        on_abandon=lambda: generation.cancel(request_id),
        on_idle=lambda: generation_liveness.watch(request_id),
    )
    first = await _first_event(stream)
    if first is None or isinstance(first, GenerationError):
        await stream.aclose()
        if first is None and stream.lost:
            return openai_error(503, LOST.message, LOST.code.value)
        if first is None:
            return openai_error(504, "no worker produced an answer in time", "timeout")
        status = 400 if first.code == ChatErrorCode.PROMPT_TOO_LONG else 500
        param = "messages" if status == 400 else None
        return openai_error(status, first.message, first.code.value, param)
    reply = Reply(f"chatcmpl-{request_id}", int(time.time()), ref.name)
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def encode(_event_id: str, event: GenerationEvent) -> str:
            return reply.chunks(event, include_usage)

        head = [reply.chunk({"role": "assistant", "content": ""}, None), encode("", first)]
        # OpenAI's clients raise on a chunk that carries `error` (the answer was cut short).
        lost = f"data: {json.dumps({'error': _error_body(LOST.message, LOST.code.value)})}\n\n"
        return sse_response(relay(stream, encode, head=head, closing="data: [DONE]\n\n", lost=lost))

    text = [first.text] if isinstance(first, GenerationToken) else []
    last: GenerationEvent = first
    try:
        async for item in stream:
            if item is not None:
                last = item[1]
                if isinstance(last, GenerationToken):
                    text.append(last.text)
    finally:
        await stream.aclose()
    if stream.lost:  # a cut answer must not pass for a whole one
        return openai_error(503, LOST.message, LOST.code.value)
    return JSONResponse(reply.completion("".join(text), last))


@dataclass
class Reply:
    """One completion's fixed fields, and its response bodies in OpenAI's shapes."""

    id: str
    created: int
    model: str

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, delta: dict[str, Any], finish: str | None) -> str:
        payload = self._base("chat.completion.chunk")
        payload["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def chunks(self, event: GenerationEvent, include_usage: bool) -> str:
        """The `data:` chunks of one event: a token's text, or the end (and the usage)."""
        if isinstance(event, GenerationToken):
            return self.chunk({"content": event.text}, None)
        if not generation_ended(event):
            return ""  # `status`: OpenAI's stream has no such chunk
        out = self.chunk({}, _finish(event))
        if include_usage:
            tail = {**self._base("chat.completion.chunk"), "choices": [], "usage": _usage(event)}
            out += f"data: {json.dumps(tail)}\n\n"
        return out

    def completion(self, text: str, last: GenerationEvent) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        return {
            **self._base("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(last)}],
            "usage": _usage(last),
        }


def _finish(event: GenerationEvent) -> str:
    length = isinstance(event, GenerationDone) and event.finish_reason == "length"
    return "length" if length else "stop"


def _usage(event: GenerationEvent) -> dict[str, int]:
    prompt, completion = 0, 0
    if isinstance(event, GenerationDone):
        prompt, completion = event.prompt_tokens, event.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
