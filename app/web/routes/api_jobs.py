"""JSON API for training jobs: create, read, metrics, live events (SSE), stop/cancel/resume/clone,
and the model versions they produce."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from app.event_types import JOB_EVENTS, job_stream_ended
from app.models import ModelVersion, TrainingJob
from app.models.job import TERMINAL
from app.redis_keys import job_stream_key
from app.schemas.common import RowId
from app.schemas.jobs import (
    JobClone,
    JobCreate,
    JobPublic,
    JobsPublic,
    VersionPublic,
    VersionsPublic,
)
from app.schemas.training import PRESETS
from app.services import jobs as service
from app.web.deps import CurrentUser, ProjectDep, SessionDep
from app.web.sse import EventStream, event_stream_response, frame

router = APIRouter(prefix="/api", tags=["jobs"])


def job_public(session: SessionDep, job: TrainingJob) -> JobPublic:
    public = JobPublic.model_validate(job)
    public.queue_position = service.queue_position(session, job)
    return public


def version_public(version: ModelVersion, slug: str) -> VersionPublic:
    return VersionPublic.model_validate({**version.__dict__, "name": f"{slug}:v{version.version}"})


@router.post("/projects/{project_id}/jobs", status_code=201, response_model=JobPublic)
def create_job(body: JobCreate, project: ProjectDep, session: SessionDep) -> JobPublic:
    config = {**PRESETS.get(body.preset or "", {}), **body.config}
    job = service.create_job(
        session,
        project,
        body.dataset_id,
        config,
        val_dataset_id=body.val_dataset_id,
        continue_from=body.continue_from,
    )
    return job_public(session, job)


@router.get("/projects/{project_id}/jobs", response_model=JobsPublic)
def list_jobs(project: ProjectDep, session: SessionDep) -> JobsPublic:
    items = [job_public(session, j) for j in service.list_jobs(session, project)]
    return JobsPublic(data=items, count=len(items))


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: RowId, session: SessionDep, user: CurrentUser) -> JobPublic:
    return job_public(session, service.get_job(session, user, job_id))


@router.get("/jobs/{job_id}/metrics")
def job_metrics(job_id: RowId, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    job = service.get_job(session, user, job_id)
    return {"job_id": job.id, "data": service.metric_history(session, job.id)}


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: RowId, session: SessionDep, user: CurrentUser) -> JobPublic:
    job = service.request_stop(session, service.get_job(session, user, job_id), "cancel")
    return job_public(session, job)


@router.post("/jobs/{job_id}/stop", response_model=JobPublic)
def stop_job(job_id: RowId, session: SessionDep, user: CurrentUser) -> JobPublic:
    """Stop now and keep the adapter as it stands (registered as a version)."""
    job = service.request_stop(session, service.get_job(session, user, job_id), "stop")
    return job_public(session, job)


@router.post("/jobs/{job_id}/resume", response_model=JobPublic)
def resume_job(job_id: RowId, session: SessionDep, user: CurrentUser) -> JobPublic:
    return job_public(session, service.resume_job(session, service.get_job(session, user, job_id)))


@router.post("/jobs/{job_id}/clone", status_code=201, response_model=JobPublic)
def clone_job(job_id: RowId, body: JobClone, session: SessionDep, user: CurrentUser) -> JobPublic:
    job = service.get_job(session, user, job_id)
    # Left out of the body: start where the cloned job started (null asks for the base model).
    parent = body.continue_from
    if "continue_from" not in body.model_fields_set:
        parent = service.parent_number(session, job)
    clone = service.clone_job(
        session, job, body.config, body.dataset_id, body.val_dataset_id, continue_from=parent
    )
    return job_public(session, clone)


@router.get("/jobs/{job_id}/events")
def job_events(
    job_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: `start`, `metric`, `log`, `status` (app/event_types.py), then `done`.
    Replays the whole stream for a new viewer (or from Last-Event-ID on reconnect), then follows
    it; ends after a final status, or once caught up when the job had already finished."""
    job = service.get_job(session, user, job_id)  # scope check before anything streams
    finished = job.status in TERMINAL
    session.close()  # the stream may last hours: give the connection back now
    stream = EventStream(
        request,
        job_stream_key(job_id),
        JOB_EVENTS,
        is_end=job_stream_ended,
        last_event_id=last_event_id,
        producer_done=finished,
    )
    return event_stream_response(stream, retry_ms=2000, closing=frame(None, "done", "{}"))


@router.get("/projects/{project_id}/versions", response_model=VersionsPublic)
def list_versions(project: ProjectDep, session: SessionDep) -> VersionsPublic:
    data = [version_public(v, project.slug) for v in service.list_versions(session, project)]
    return VersionsPublic(data=data, count=len(data))
