"""Conversations on the chat page, their messages, and base-vs-fine-tuned votes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class Conversation(TimestampMixin, Base):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    # "base" or "v{n}"; in compare mode the right-hand model is `compare_model`.
    model: Mapped[str] = mapped_column(String(64), default="base")
    compare_model: Mapped[str | None] = mapped_column(String(64), default=None)
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ChatMessage(TimestampMixin, Base):
    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    # Which model wrote an assistant message ("base", "v2"); compare answers share a turn.
    model: Mapped[str | None] = mapped_column(String(64), default=None)
    turn: Mapped[int] = mapped_column(Integer, default=0)
    content: Mapped[str] = mapped_column(Text, default="")
    # streaming | done | stopped | error
    state: Mapped[str] = mapped_column(String(16), default="done")
    request_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    # {prompt_tokens, completion_tokens, time_to_first_token_s, tokens_per_s, finish_reason}
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # state == "error": a code rendered through the catalogs (`chat_errors.<code>`) with params.
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class ComparisonVote(TimestampMixin, Base):
    __tablename__ = "comparison_votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # The pair in a canonical order (sorted), and which side won ("a", "b" or "tie").
    model_a: Mapped[str] = mapped_column(String(64))
    model_b: Mapped[str] = mapped_column(String(64))
    winner: Mapped[str] = mapped_column(String(8))
    turn_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("chat_messages.id", ondelete="SET NULL"), default=None
    )
    # A blind review of an evaluation's answers (None: a vote from the chat's compare mode).
    # Plain ids, no FOREIGN KEY, so the column was added in place (migration 0007); the
    # evaluations service deletes these votes with their evaluation.
    evaluation_id: Mapped[int | None] = mapped_column(Integer, index=True, default=None)
    example_position: Mapped[int | None] = mapped_column(Integer, default=None)
    # Optional 1-5 scores per side: {"a": {"relevance": 4, "accuracy": 3, ...}, "b": {...}}.
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
