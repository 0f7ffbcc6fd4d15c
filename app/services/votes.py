"""Pairwise preferences between two models of a project: the chat's compare votes and the
evaluation's blind review share one table (ComparisonVote) and one tally.

A pair is stored in a canonical (sorted) order, so "v1 vs base" and "base vs v1" count
together; `winner` is "a", "b" or "tie". A blind review may add 1-5 scores per side for the
seed's four qualities.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import FieldError, InvalidInput
from app.models import ComparisonVote, Project

QUALITIES = ("relevance", "accuracy", "fluency", "instruction_following")


def clean_scores(raw: dict[str, Any] | None, field_prefix: str) -> dict[str, int]:
    """Scores 1-5 for the known qualities; empty ones are left out, anything else is an error
    naming the field."""
    scores: dict[str, int] = {}
    for quality in QUALITIES:
        value = (raw or {}).get(quality)
        if value in (None, ""):
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if not 1 <= number <= 5:
            field = f"{field_prefix}.{quality}"
            raise InvalidInput([FieldError(field, "errors.score_range", {"value": value})])
        scores[quality] = number
    return scores


def record(
    session: Session,
    project: Project,
    first: str,
    second: str,
    winner_label: str,
    *,
    scores: dict[str, dict[str, int]] | None = None,
    **origin: Any,
) -> ComparisonVote:
    """Store one preference between `first` and `second` (labels like "base", "v2");
    `winner_label` is one of them or "tie"; `scores` maps a label to its quality scores;
    `origin` says where the vote came from (turn_message_id, or evaluation_id and
    example_position)."""
    if first == second:
        raise InvalidInput([FieldError("winner", "errors.vote_bad_winner")])
    pair = sorted([first, second])
    if winner_label not in (*pair, "tie"):
        raise InvalidInput([FieldError("winner", "errors.vote_bad_winner")])
    winner = "tie" if winner_label == "tie" else ("a" if winner_label == pair[0] else "b")
    by_side = None
    if scores:
        by_side = {side: scores.get(label, {}) for side, label in zip("ab", pair, strict=True)}
    vote = ComparisonVote(
        project_id=project.id,
        model_a=pair[0],
        model_b=pair[1],
        winner=winner,
        scores=by_side,
        **origin,
    )
    session.add(vote)
    session.commit()
    return vote


def tally(
    session: Session, project: Project, evaluation_id: int | None = None
) -> list[dict[str, Any]]:
    """Per pair: wins of each side, ties, win rates (ties counted as half a win each) and the
    mean score of each side per quality. `evaluation_id` limits it to one blind review."""
    query = select(ComparisonVote).where(ComparisonVote.project_id == project.id)
    if evaluation_id is not None:
        query = query.where(ComparisonVote.evaluation_id == evaluation_id)
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    sums: dict[tuple[str, str], dict[str, dict[str, list[int]]]] = {}
    for vote in session.scalars(query.order_by(ComparisonVote.id)):
        key = (vote.model_a, vote.model_b)
        entry = pairs.setdefault(
            key, {"model_a": vote.model_a, "model_b": vote.model_b, "a": 0, "b": 0, "tie": 0}
        )
        entry[vote.winner] += 1
        for side, scores in (vote.scores or {}).items():
            for quality, value in scores.items():
                sums.setdefault(key, {}).setdefault(side, {}).setdefault(quality, []).append(value)
    for key, entry in pairs.items():
        total = entry["a"] + entry["b"] + entry["tie"]
        entry["total"] = total
        entry["a_rate"] = (entry["a"] + entry["tie"] / 2) / total
        entry["b_rate"] = (entry["b"] + entry["tie"] / 2) / total
        entry["scores"] = {
            side: {q: sum(v) / len(v) for q, v in qualities.items()}
            for side, qualities in sums.get(key, {}).items()
        }
    return list(pairs.values())
