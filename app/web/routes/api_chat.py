"""Streaming answers (SSE relay of a generation's tokens), stopping them, and compare votes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app import events
from app.errors import NotFound
from app.models import ChatMessage
from app.redis_keys import generation_stream_key
from app.services import chat, generation
from app.web.deps import CurrentUser, ProjectDep, SessionDep

router = APIRouter(prefix="/api", tags=["chat"])
IDLE_LIMIT_S = 600  # give up on an answer that produced nothing for ten minutes


@router.get("/generations/{request_id}/events")
async def generation_events(
    request_id: str,
    request: Request,
    user: CurrentUser,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """`status` (loading / generating), `token` {text}, then `done` {stats} or `error`.
    A client that goes away cancels the generation, freeing the worker at the next token."""
    if not request_id.isalnum():
        raise NotFound("errors.generation_not_found")

    async def stream() -> AsyncIterator[str]:
        client = events.async_client()
        idle = 0
        finished = False
        try:
            yield "retry: 1000\n\n"
            key = generation_stream_key(request_id)
            async for item in events.follow(client, key, last_event_id or "0"):
                if await request.is_disconnected():
                    return
                if item is None:
                    idle += 1
                    if idle >= IDLE_LIMIT_S:
                        return
                    yield ": keep-alive\n\n"
                    continue
                idle = 0
                event_id, kind, data = item
                yield events.sse_frame(event_id, kind, data)
                if kind in ("done", "error"):
                    finished = True
                    return
        finally:
            if not finished:
                generation.cancel(request_id)
            await client.aclose()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/generations/{request_id}/cancel", status_code=202)
def cancel_generation(request_id: str, user: CurrentUser) -> dict[str, str]:
    if not request_id.isalnum():
        raise NotFound("errors.generation_not_found")
    generation.cancel(request_id)
    return {"request_id": request_id, "status": "cancelling"}


class VoteIn(BaseModel):
    message_id: int
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
