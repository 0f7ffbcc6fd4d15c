"""Streaming answers (SSE relay of a generation's tokens), stopping them, and compare votes."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.error_codes import describe
from app.errors import NotFound
from app.event_types import (
    GENERATION_EVENTS,
    ChatErrorCode,
    GenerationError,
    GenerationEvent,
    generation_ended,
)
from app.models import ChatMessage
from app.redis_keys import generation_stream_key
from app.schemas.common import RowId
from app.services import answer_readers, chat, generation, generation_liveness
from app.web.deps import CurrentUser, ProjectDep, SessionDep, TranslatorDep
from app.web.sse import EventStream, event_frame, event_stream_response, frame

router = APIRouter(prefix="/api", tags=["chat"])


@router.get("/generations/{request_id}/events")
def generation_events(
    request_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`status` (loading / generating), `token` {text}, then `done` {stats} or `error` {code,
    params, message, text}: `text` is the error in the reader's language (`stream_lost` when
    Redis went away mid-answer). A client that goes away and does not come back within
    answer_readers.RESUME_GRACE_S (a web restart) cancels the generation, freeing the worker."""
    generation.check_owner(request_id, user)
    answer_readers.attach(request_id)  # a reader back after a web restart: keep the answer going
    session.close()  # nothing more to read: give the connection back before streaming

    def encode(event_id: str, event: GenerationEvent) -> str:
        if not isinstance(event, GenerationError):
            return event_frame(event_id, event)
        text = describe(t, event.code, event.params, event.message)
        data = {**event.model_dump(mode="json", exclude={"type"}), "text": text}
        return frame(event_id, event.type, json.dumps(data, ensure_ascii=False))

    stream = EventStream(
        request,
        generation_stream_key(request_id),
        GENERATION_EVENTS,
        is_end=generation_ended,
        last_event_id=last_event_id,
        idle_limit_s=generation.IDLE_LIMIT_S,
        on_abandon=lambda: answer_readers.abandon(request_id),
        on_idle=lambda: generation_liveness.watch(request_id),
    )
    # Redis gone or restarted mid-answer: the stream is lost with it; say so, do not hang.
    lost = encode("", GenerationError.of(ChatErrorCode.STREAM_LOST))
    return event_stream_response(stream, retry_ms=1000, encode=encode, lost=lost)


@router.post("/generations/{request_id}/cancel", status_code=202)
def cancel_generation(request_id: str, user: CurrentUser) -> dict[str, str]:
    generation.check_owner(request_id, user)
    generation.cancel(request_id)
    return {"request_id": request_id, "status": "cancelling"}


class VoteIn(BaseModel):
    message_id: RowId
    winner: str  # a model label of the pair ("base", "v2") or "tie"


@router.post("/projects/{project_id}/votes", status_code=201)
def vote(body: VoteIn, project: ProjectDep, session: SessionDep, user: CurrentUser) -> Any:
    message = session.get(ChatMessage, body.message_id)
    if message is None:
        raise NotFound("errors.generation_not_found")
    chat.get_conversation(session, user, message.conversation_id)  # scope check
    chat.vote(session, project, message, body.winner)
    return {"tally": chat.tally(session, project)}


@router.get("/projects/{project_id}/votes")
def votes(project: ProjectDep, session: SessionDep) -> Any:
    return {"tally": chat.tally(session, project)}
