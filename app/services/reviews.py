"""Blind A/B review of an evaluation: one prompt at a time, two versions' answers in random
order with their labels hidden; people pick the better one (or a tie) and may score both on
the four qualities. Votes go to the project's shared vote table (app/services/votes.py)."""

from __future__ import annotations

import random
from itertools import combinations
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import Conflict, FieldError, InvalidInput
from app.models import ComparisonVote, Evaluation, EvaluationExample, JobStatus, Project
from app.schemas.evaluations import ReviewVote
from app.services import votes
from app.services.evaluations import prompt_text

_random = random.SystemRandom()


def _pairs(evaluation: Evaluation) -> list[tuple[str, str]]:
    return [tuple(sorted(pair)) for pair in combinations(evaluation.versions, 2)]  # type: ignore[misc]


def _voted(session: Session, evaluation: Evaluation) -> set[tuple[int, str, str]]:
    rows = session.execute(
        select(
            ComparisonVote.example_position, ComparisonVote.model_a, ComparisonVote.model_b
        ).where(ComparisonVote.evaluation_id == evaluation.id)
    )
    return {(int(p), a, b) for p, a, b in rows if p is not None}


def next_pair(session: Session, evaluation: Evaluation) -> dict[str, Any]:
    """A random example-and-pair nobody voted on yet, sides shuffled; `done` when none is left."""
    if evaluation.status != JobStatus.SUCCEEDED:
        raise Conflict("errors.review_not_ready")
    pairs = _pairs(evaluation)
    examples = {
        e.position: e
        for e in session.scalars(
            select(EvaluationExample).where(
                EvaluationExample.evaluation_id == evaluation.id,
                EvaluationExample.subset == "domain",
            )
        )
    }
    voted = _voted(session, evaluation)
    open_items = [(p, a, b) for p in sorted(examples) for a, b in pairs if (p, a, b) not in voted]
    total = len(examples) * len(pairs)
    if not open_items:
        return {"done": True, "remaining": 0, "total": total}
    position, a, b = _random.choice(open_items)
    left, right = (a, b) if _random.random() < 0.5 else (b, a)
    example = examples[position]
    return {
        "done": False,
        "position": position,
        "prompt": prompt_text(example.messages),
        "messages": example.messages,
        "reference": example.reference,
        "left": {"label": left, "answer": (example.outputs.get(left) or {}).get("answer", "")},
        "right": {"label": right, "answer": (example.outputs.get(right) or {}).get("answer", "")},
        "remaining": len(open_items),
        "total": total,
    }


def record_vote(session: Session, evaluation: Evaluation, vote: ReviewVote) -> None:
    """Store (or replace) the vote on one example and pair."""
    if evaluation.status != JobStatus.SUCCEEDED:
        raise Conflict("errors.review_not_ready")
    if vote.left == vote.right or not {vote.left, vote.right} <= set(evaluation.versions):
        raise InvalidInput([FieldError("left", "errors.vote_bad_winner")])
    exists = session.scalar(
        select(EvaluationExample.id).where(
            EvaluationExample.evaluation_id == evaluation.id,
            EvaluationExample.position == vote.position,
            EvaluationExample.subset == "domain",
        )
    )
    if exists is None:
        raise InvalidInput([FieldError("position", "errors.review_bad_position")])
    scores = {
        label: votes.clean_scores(vote.scores.get(side), f"scores.{side}")
        for side, label in (("left", vote.left), ("right", vote.right))
    }
    a, b = sorted([vote.left, vote.right])
    session.execute(
        delete(ComparisonVote).where(
            ComparisonVote.evaluation_id == evaluation.id,
            ComparisonVote.example_position == vote.position,
            ComparisonVote.model_a == a,
            ComparisonVote.model_b == b,
        )
    )
    winner = {"left": vote.left, "right": vote.right, "tie": "tie"}[vote.choice]
    project = session.get(Project, evaluation.project_id)
    assert project is not None
    votes.record(
        session,
        project,
        vote.left,
        vote.right,
        winner,
        scores={k: v for k, v in scores.items() if v} or None,
        evaluation_id=evaluation.id,
        example_position=vote.position,
    )


def tally(session: Session, evaluation: Evaluation) -> list[dict[str, Any]]:
    project = session.get(Project, evaluation.project_id)
    assert project is not None
    return votes.tally(session, project, evaluation_id=evaluation.id)
