"""JSON API for evaluations: create, read, per-example rows (JSON, CSV, JSONL), live progress
(SSE), cancel, delete, and the blind A/B review's votes and win rates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.event_types import EVALUATION_EVENTS, evaluation_stream_ended
from app.models import Evaluation
from app.models.job import TERMINAL
from app.redis_keys import evaluation_stream_key
from app.schemas.common import RowId
from app.schemas.evaluations import (
    EvaluationCreate,
    EvaluationPublic,
    EvaluationQueued,
    EvaluationsPublic,
    ReviewVote,
)
from app.services import evaluations as service
from app.services import projects as project_service
from app.services import reviews
from app.web.deps import CurrentUser, ProjectDep, SessionDep
from app.web.sse import EventStream, event_stream_response, frame

router = APIRouter(prefix="/api", tags=["evaluations"])

PUBLIC_SETTINGS = ("max_new_tokens", "temperature", "top_p", "seed", "include_general")


def evaluation_public(evaluation: Evaluation) -> EvaluationPublic:
    results = evaluation.results or []
    return EvaluationPublic(
        id=evaluation.id,
        project_id=evaluation.project_id,
        status=evaluation.status,
        progress=evaluation.progress,
        dataset_id=evaluation.dataset_id,
        job_id=evaluation.job_id,
        source_name=evaluation.source_name,
        source_sha256=evaluation.source_sha256,
        versions=evaluation.versions,
        settings={k: evaluation.settings.get(k) for k in PUBLIC_SETTINGS},
        results=results,
        best=service.best_by_metric(results),
        methods=evaluation.methods,
        example_count=evaluation.example_count,
        error_code=evaluation.error_code,
        error_params=evaluation.error_params,
        error=evaluation.error,
        created_at=evaluation.created_at,
        started_at=evaluation.started_at,
        finished_at=evaluation.finished_at,
    )


@router.post("/evaluations", status_code=202, response_model=EvaluationQueued)
def create_evaluation(
    body: EvaluationCreate, session: SessionDep, user: CurrentUser
) -> EvaluationQueued:
    project = project_service.get_project(session, user, body.project_id)
    evaluation = service.create_evaluation(
        session, project, **body.model_dump(exclude={"project_id"})
    )
    return EvaluationQueued(id=evaluation.id, status=evaluation.status)


@router.get("/projects/{project_id}/evaluations", response_model=EvaluationsPublic)
def list_evaluations(project: ProjectDep, session: SessionDep) -> EvaluationsPublic:
    items = [evaluation_public(e) for e in service.list_evaluations(session, project)]
    return EvaluationsPublic(data=items, count=len(items))


@router.get("/evaluations/{evaluation_id}", response_model=EvaluationPublic)
def get_evaluation(
    evaluation_id: RowId, session: SessionDep, user: CurrentUser
) -> EvaluationPublic:
    return evaluation_public(service.get_evaluation(session, user, evaluation_id))


@router.get("/evaluations/{evaluation_id}/examples", response_model=None)
def evaluation_examples(
    evaluation_id: RowId,
    session: SessionDep,
    user: CurrentUser,
    format: Literal["json", "csv", "jsonl"] = "json",
    sort: Annotated[str | None, Query(max_length=64)] = None,
    subset: Literal["domain", "general"] = "domain",
) -> Response | dict[str, Any]:
    """Every example with each version's answer and scores; `sort=v1:rougeL` puts the worst
    first. `format=csv|jsonl` downloads them."""
    evaluation = service.get_evaluation(session, user, evaluation_id)
    rows = service.examples(session, evaluation, sort=sort, subset=subset)
    if format == "json":
        data = list(service.example_records(evaluation, rows))
        return {"data": data, "count": len(data)}
    body = (
        service.examples_csv(evaluation, rows)
        if format == "csv"
        else service.examples_jsonl(evaluation, rows)
    )
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson; charset=utf-8"
    name = f"evaluation-{evaluation.id}-examples.{format}"
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/evaluations/{evaluation_id}/events")
def evaluation_events(
    evaluation_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: `progress` and `status`, then `done` after a final status."""
    evaluation = service.get_evaluation(session, user, evaluation_id)
    finished = evaluation.status in TERMINAL
    session.close()
    stream = EventStream(
        request,
        evaluation_stream_key(evaluation_id),
        EVALUATION_EVENTS,
        is_end=evaluation_stream_ended,
        last_event_id=last_event_id,
        producer_done=finished,
    )
    return event_stream_response(stream, retry_ms=2000, closing=frame(None, "done", "{}"))


@router.post("/evaluations/{evaluation_id}/cancel", response_model=EvaluationPublic)
def cancel_evaluation(
    evaluation_id: RowId, session: SessionDep, user: CurrentUser
) -> EvaluationPublic:
    evaluation = service.get_evaluation(session, user, evaluation_id)
    return evaluation_public(service.request_cancel(session, evaluation))


@router.delete("/evaluations/{evaluation_id}", status_code=204)
def delete_evaluation(evaluation_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    service.delete_evaluation(session, service.get_evaluation(session, user, evaluation_id))
    return Response(status_code=204)


@router.get("/evaluations/{evaluation_id}/review/next")
def next_review(evaluation_id: RowId, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """The next blind pair: one prompt, two versions' answers in random order, no labels
    shown to people (`left`/`right` are what the vote sends back). `done` when every pair of
    every example has a vote."""
    evaluation = service.get_evaluation(session, user, evaluation_id)
    return reviews.next_pair(session, evaluation)


@router.post("/evaluations/{evaluation_id}/review", status_code=201)
def vote(
    evaluation_id: RowId, body: ReviewVote, session: SessionDep, user: CurrentUser
) -> dict[str, Any]:
    evaluation = service.get_evaluation(session, user, evaluation_id)
    reviews.record_vote(session, evaluation, body)
    return {"tally": reviews.tally(session, evaluation)}


@router.get("/evaluations/{evaluation_id}/review")
def review_tally(evaluation_id: RowId, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """Win rates and mean scores per pair of this evaluation's blind review."""
    evaluation = service.get_evaluation(session, user, evaluation_id)
    return {"tally": reviews.tally(session, evaluation)}
