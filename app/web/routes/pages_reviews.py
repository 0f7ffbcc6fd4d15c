"""The blind A/B review page of an evaluation: one prompt and two unlabelled answers at a time;
a vote (with optional 1-5 scores) brings the next pair. Labels appear only in the tally."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse

from app.errors import InvalidInput
from app.models import Evaluation, EvaluationExample
from app.schemas.common import RowId
from app.schemas.evaluations import ReviewVote
from app.services import evaluations as service
from app.services import reviews
from app.services.votes import QUALITIES
from app.web.deps import CurrentUser, SessionDep, TranslatorDep
from app.web.errors import field_details
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)
SIDES = ("left", "right")


def vote_from_form(form: FormData) -> ReviewVote:
    """Form fields `position`, `left`, `right`, `choice` and `scores.<side>.<quality>`."""
    raw = str(form.get("position", ""))
    return ReviewVote.model_validate(
        {
            "position": int(raw) if raw.isdecimal() else -1,  # isdigit() passes "²": a 500
            "left": str(form.get("left", "")),
            "right": str(form.get("right", "")),
            "choice": str(form.get("choice", "")),
            "scores": {
                side: {q: str(form.get(f"scores.{side}.{q}", "")) or None for q in QUALITIES}
                for side in SIDES
            },
        }
    )


def same_pair(session: Session, evaluation: Evaluation, vote: ReviewVote) -> dict[str, Any]:
    """The pair a rejected vote was about, shown again with its error (not a new random one)."""
    example = session.scalar(
        select(EvaluationExample).where(
            EvaluationExample.evaluation_id == evaluation.id,
            EvaluationExample.position == vote.position,
            EvaluationExample.subset == "domain",
        )
    )
    pair = reviews.next_pair(session, evaluation)
    if example is None or {vote.left, vote.right} - set(evaluation.versions):
        return pair
    answer = {
        side: (example.outputs.get(label) or {}).get("answer", "")
        for side, label in (("left", vote.left), ("right", vote.right))
    }
    return {
        **pair,
        "done": False,
        "position": example.position,
        "prompt": service.prompt_text(example.messages),
        "reference": example.reference,
        "left": {"label": vote.left, "answer": answer["left"]},
        "right": {"label": vote.right, "answer": answer["right"]},
    }


def review_context(session: Session, evaluation: Evaluation, pair: dict[str, Any]) -> dict:
    return {
        "evaluation": evaluation,
        "pair": pair,
        "judged": pair["total"] - pair["remaining"],
        "qualities": QUALITIES,
        "tally": reviews.tally(session, evaluation) if pair["done"] else [],
        "errors": {},
    }


@router.get("/evaluations/{evaluation_id}/review")
def review_page(
    evaluation_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    _t: TranslatorDep,
) -> HTMLResponse:
    evaluation = service.get_evaluation(session, user, evaluation_id)
    context = review_context(session, evaluation, reviews.next_pair(session, evaluation))
    return render(request, "pages/review.html", **context)


@router.post("/evaluations/{evaluation_id}/review")
async def review_vote(
    evaluation_id: RowId, request: Request, session: SessionDep, user: CurrentUser, t: TranslatorDep
) -> HTMLResponse:
    evaluation = service.get_evaluation(session, user, evaluation_id)
    form = await request.form()
    try:
        vote = vote_from_form(form)
    except ValidationError:  # no choice button: only a hand-made request gets here
        context = review_context(session, evaluation, reviews.next_pair(session, evaluation))
        context["errors"] = {"choice": t("review.pick_one")}
        return render(request, "partials/review_pair.html", status_code=422, **context)
    try:
        reviews.record_vote(session, evaluation, vote)
    except InvalidInput as exc:
        context = review_context(session, evaluation, same_pair(session, evaluation, vote))
        context["errors"] = {d["field"]: d["message"] for d in field_details(exc.errors, t)}
        context["scores"] = vote.scores
        return render(request, "partials/review_pair.html", status_code=422, **context)
    context = review_context(session, evaluation, reviews.next_pair(session, evaluation))
    return render(request, "partials/review_pair.html", **context)
