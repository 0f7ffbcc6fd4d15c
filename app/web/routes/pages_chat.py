"""The chat page: conversations, one model or two side by side, streaming answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from markdown_it import MarkdownIt
from starlette.responses import HTMLResponse, Response

from app.errors import AppError, InvalidInput
from app.event_types import ChatErrorCode  # noqa: F401 - registers the chat error codes
from app.models import ChatMessage, Conversation, Project
from app.schemas.common import RowId
from app.services import chat
from app.services import jobs as job_service
from app.web.deps import CurrentUser, IsHtmx, ProjectDep, SessionDep, TranslatorDep
from app.web.errors import field_details
from app.web.routes.pages_projects import redirect
from app.web.templating import render, templates

router = APIRouter(tags=["pages"], include_in_schema=False)
# CommonMark with raw HTML disabled: a model that writes <script> shows it as text.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
templates.env.filters["markdown"] = _markdown.render


def model_options(session: SessionDep, project: Project) -> list[str]:
    return ["base"] + [f"v{v.version}" for v in job_service.list_versions(session, project)]


def chat_context(session: SessionDep, project: Project, conversation: Conversation | None) -> dict:
    options = model_options(session, project)
    turns: dict[int, dict[str, Any]] = {}
    if conversation is not None:
        for m in chat.messages_of(session, conversation):
            turn = turns.setdefault(m.turn, {"user": None, "answers": []})
            if m.role == "user":
                turn["user"] = m
            else:
                turn["answers"].append(m)
    return {
        "project": project,
        "conversations": chat.list_conversations(session, project),
        "conversation": conversation,
        "turns": [turns[k] for k in sorted(turns)],
        "options": options,
        "latest": options[-1],
        "tally": chat.tally(session, project),
    }


@router.get("/projects/{project_id}/chat")
def chat_home(
    request: Request, project: ProjectDep, session: SessionDep, _t: TranslatorDep
) -> HTMLResponse:
    return render(request, "pages/chat.html", **chat_context(session, project, None))


@router.post("/projects/{project_id}/chat")
def new_conversation(
    project: ProjectDep,
    session: SessionDep,
    htmx: IsHtmx,
    model: Annotated[str, Form()] = "base",
    compare_model: Annotated[str, Form()] = "",
    system_prompt: Annotated[str, Form()] = "",
) -> Response:
    conversation = chat.create_conversation(
        session, project, model, compare_model or None, system_prompt
    )
    return redirect(f"/chat/{conversation.id}", htmx)


@router.get("/chat/{conversation_id}")
def conversation_page(
    conversation_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    _t: TranslatorDep,
) -> HTMLResponse:
    conversation = chat.get_conversation(session, user, conversation_id)
    project = session.get(Project, conversation.project_id)
    return render(request, "pages/chat.html", **chat_context(session, project, conversation))


@router.post("/chat/{conversation_id}/messages")
def send_message(
    conversation_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    content: Annotated[str, Form()] = "",
) -> HTMLResponse:
    conversation = chat.get_conversation(session, user, conversation_id)
    try:
        chat.send(session, conversation, content, user)
    except InvalidInput as exc:
        message = " ".join(d["message"] for d in field_details(exc.errors, t))
        return render(request, "partials/upload_error.html", status_code=422, message=message)
    except AppError as exc:
        return render(
            request,
            "partials/upload_error.html",
            status_code=exc.status_code,
            message=t(exc.key, **exc.params),
        )
    project = session.get(Project, conversation.project_id)
    context = chat_context(session, project, conversation)
    return render(request, "partials/chat_turn.html", turn=context["turns"][-1], **context)


@router.post("/chat/{conversation_id}/settings")
def conversation_settings(
    conversation_id: RowId,
    session: SessionDep,
    user: CurrentUser,
    htmx: IsHtmx,
    title: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "base",
    compare_model: Annotated[str, Form()] = "",
    system_prompt: Annotated[str, Form()] = "",
    temperature: Annotated[float, Form()] = 0.7,
    top_p: Annotated[float, Form()] = 1.0,
    top_k: Annotated[int, Form()] = 0,
    max_new_tokens: Annotated[int, Form()] = 1024,
    repetition_penalty: Annotated[float, Form()] = 1.0,
    stop: Annotated[str, Form()] = "",
) -> Response:
    conversation = chat.get_conversation(session, user, conversation_id)
    params = {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_new_tokens,
        "repetition_penalty": repetition_penalty,
        "stop": [s for s in stop.split("|") if s][:4],
    }
    fields: dict[str, Any] = {
        "model": model,
        "compare_model": compare_model or None,
        "system_prompt": system_prompt,
        "params": params,
    }
    if title.strip():
        fields["title"] = title
    chat.update_conversation(session, conversation, **fields)
    return redirect(f"/chat/{conversation.id}", htmx)


@router.delete("/chat/{conversation_id}")
def delete_conversation(
    conversation_id: RowId, session: SessionDep, user: CurrentUser, htmx: IsHtmx
) -> Response:
    conversation = chat.get_conversation(session, user, conversation_id)
    project_id = conversation.project_id
    chat.delete_conversation(session, conversation)
    return redirect(f"/projects/{project_id}/chat", htmx)


@router.get("/chat/messages/{message_id}")
def message_fragment(
    message_id: RowId, request: Request, session: SessionDep, user: CurrentUser, _t: TranslatorDep
) -> HTMLResponse:
    message = session.get(ChatMessage, message_id)
    if message is None:
        return HTMLResponse(status_code=404)
    conversation = chat.get_conversation(session, user, message.conversation_id)
    return render(request, "partials/chat_answer.html", answer=message, conversation=conversation)


@router.post("/chat/messages/{message_id}/vote")
def vote(
    message_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    winner: Annotated[str, Form()],
) -> HTMLResponse:
    message = session.get(ChatMessage, message_id)
    if message is None:
        return HTMLResponse(status_code=404)
    conversation = chat.get_conversation(session, user, message.conversation_id)
    project = session.get(Project, conversation.project_id)
    chat.vote(session, project, message, winner)
    return render(
        request,
        "partials/vote_done.html",
        tally=chat.tally(session, project),
        conversation=conversation,
    )
