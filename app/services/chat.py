"""Chat: conversations per project, turns answered by one model or two side by side, votes.

A turn is one user message plus one assistant message per model. Each model sees its own
earlier answers, so in compare mode the two sides are two honest conversations with the same
questions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import FieldError, InvalidInput, NotFound
from app.models import ChatMessage, Conversation, Project, User
from app.services import generation, text_limits, votes
from app.services.access import project_scope

TITLE_MAX = 200


def list_conversations(session: Session, project: Project) -> list[Conversation]:
    query = select(Conversation).where(Conversation.project_id == project.id)
    return list(session.scalars(query.order_by(Conversation.updated_at.desc())))


def get_conversation(session: Session, owner: User, conversation_id: int) -> Conversation:
    conversation = session.scalar(
        select(Conversation)
        .join(Project, Project.id == Conversation.project_id)
        .where(Conversation.id == conversation_id, project_scope(owner))
    )
    if conversation is None:
        raise NotFound("errors.conversation_not_found", id=conversation_id)
    return conversation


def messages_of(session: Session, conversation: Conversation) -> list[ChatMessage]:
    query = select(ChatMessage).where(ChatMessage.conversation_id == conversation.id)
    return list(session.scalars(query.order_by(ChatMessage.turn, ChatMessage.id)))


def _check_system_prompt(text: str) -> None:
    text_limits.check_length(
        "system_prompt",
        text.strip(),
        text_limits.SYSTEM_PROMPT_MAX_CHARS,
        "errors.system_prompt_too_long",
    )


def create_conversation(
    session: Session,
    project: Project,
    model: str = "base",
    compare_model: str | None = None,
    system_prompt: str = "",
    params: dict[str, Any] | None = None,
) -> Conversation:
    for label in filter(None, (model, compare_model)):
        generation.resolve_model(session, project, label)  # 404 for an unknown version
    _check_system_prompt(system_prompt)
    checked = generation.parse_params(params or {})
    conversation = Conversation(
        project_id=project.id,
        title="",
        model=model,
        compare_model=compare_model or None,
        system_prompt=system_prompt.strip(),
        params=checked.model_dump(),
    )
    session.add(conversation)
    session.commit()
    return conversation


def update_conversation(session: Session, conversation: Conversation, **fields: Any) -> None:
    _check_system_prompt(fields.get("system_prompt") or "")
    if "title" in fields:
        title = " ".join(str(fields["title"]).split())
        if not title:
            raise InvalidInput([FieldError("title", "errors.name_required")])
        conversation.title = title[:TITLE_MAX]
    if "params" in fields:
        conversation.params = generation.parse_params(fields["params"]).model_dump()
    for name in ("model", "compare_model", "system_prompt"):
        if name in fields:
            setattr(conversation, name, fields[name] or (None if name == "compare_model" else ""))
    session.commit()


def delete_conversation(session: Session, conversation: Conversation) -> None:
    session.delete(conversation)
    session.commit()


def _history(
    conversation: Conversation, messages: list[ChatMessage], label: str
) -> list[dict[str, str]]:
    history: list[dict[str, str]] = []
    if conversation.system_prompt:
        history.append({"role": "system", "content": conversation.system_prompt})
    for message in messages:
        if message.role == "user":
            history.append({"role": "user", "content": message.content})
        elif message.model == label and message.content and message.state in ("done", "stopped"):
            history.append({"role": "assistant", "content": message.content})
        elif message.model == label:
            # An answer that failed: drop its question too, so roles keep alternating.
            if history and history[-1]["role"] == "user":
                history.pop()
    return history


def send(
    session: Session, conversation: Conversation, text: str, sender: User
) -> list[ChatMessage]:
    """Store the user's message and queue one answer per model; returns the answers."""
    text = text.strip()
    if not text:
        raise InvalidInput([FieldError("content", "errors.message_required")])
    text_limits.check_length(
        "content", text, text_limits.PROMPT_MAX_CHARS, "errors.message_too_long"
    )
    project = session.get(Project, conversation.project_id)
    assert project is not None
    labels = [conversation.model] + (
        [conversation.compare_model] if conversation.compare_model else []
    )
    refs = [generation.resolve_model(session, project, label) for label in labels]
    generation.require_infer_worker()
    previous = messages_of(session, conversation)
    turn = max((m.turn for m in previous), default=0) + 1
    session.add(ChatMessage(conversation_id=conversation.id, role="user", content=text, turn=turn))
    if not conversation.title:
        conversation.title = text[:60]
    answers = [
        ChatMessage(
            conversation_id=conversation.id,
            role="assistant",
            model=ref.label,
            turn=turn,
            state="streaming",
        )
        for ref in refs
    ]
    session.add_all(answers)
    session.commit()
    params = generation.GenParams.model_validate(conversation.params or {})
    for ref, answer in zip(refs, answers, strict=True):
        history = _history(conversation, previous, ref.label) + [{"role": "user", "content": text}]
        answer.request_id = generation.start(
            ref, history, params, owner_id=sender.id, message_id=answer.id
        )
    session.commit()
    return answers


def vote(session: Session, project: Project, message: ChatMessage, winner_label: str) -> None:
    """Record which of a compare turn's two answers was better ("tie" allowed)."""
    conversation = session.get(Conversation, message.conversation_id)
    if conversation is None or conversation.compare_model is None:
        raise InvalidInput([FieldError("winner", "errors.vote_needs_compare")])
    votes.record(
        session,
        project,
        conversation.model,
        conversation.compare_model,
        winner_label,
        turn_message_id=message.id,
    )


def tally(session: Session, project: Project) -> list[dict[str, Any]]:
    return votes.tally(session, project)
