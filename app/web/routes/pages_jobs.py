"""Browser pages for training: the LoRA form (with estimates), the live job page, job control."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from app.errors import AppError, InvalidInput
from app.models import Dataset, Project, TrainingJob, User
from app.schemas.common import RowId
from app.schemas.training import (
    PRESETS,
    Method,
    Overlength,
    Precision,
    Scheduler,
    TrainingConfig,
)
from app.services import datasets as dataset_service
from app.services import estimates, lineage, model_choices, placement
from app.services import jobs as service
from app.services.model_modules import target_choices
from app.web.deps import CurrentUser, IsHtmx, ProjectDep, SessionDep, SettingsDep, TranslatorDep
from app.web.errors import field_details
from app.web.routes.pages_projects import redirect
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)

BOOLEAN_FIELDS = ("use_dora", "use_rslora", "gradient_checkpointing", "keep_best")


def train_device() -> str:
    return estimates.train_device(estimates.train_workers())


def _int_or_none(values: dict[str, Any], name: str) -> int | None:
    value = str(values.get(name, ""))
    return int(value) if value.isdigit() else None


def config_from_form(form: dict[str, Any], targets: list[str]) -> dict[str, Any]:
    """Form strings → a config dict for TrainingConfig (which does the validation)."""
    fields = TrainingConfig.model_fields
    config: dict[str, Any] = {}
    for name in fields:
        if name in BOOLEAN_FIELDS:
            config[name] = form.get(name) in ("on", "true", "1")
        elif name == "target_modules":
            config[name] = targets or None
        elif name == "chat_template":
            continue  # the project's setting applies
        elif form.get(name) not in (None, ""):
            config[name] = form[name]
    return config


def form_context(
    session: SessionDep, user: User, project: Project, settings: SettingsDep, values: dict[str, Any]
) -> dict[str, Any]:
    datasets = dataset_service.list_datasets(session, project)
    device = train_device()
    targets, targets_from_model = target_choices(project.base_model, settings.data_dir)
    # Only versions of the project's current base model can be continued from.
    versions = service.list_versions(session, project)
    return {
        "project": project,
        "datasets": datasets,
        "parent_versions": [v for v in versions if v.base_model == project.base_model],
        "values": values,
        "presets": PRESETS,
        "methods": list(Method),
        "schedulers": list(Scheduler),
        "precisions": list(Precision),
        "overlength_choices": list(Overlength),
        "targets": targets,
        "targets_from_model": targets_from_model,
        "device": device,
        "qlora_available": device == "cuda",
    }


def default_values(project: Project, datasets: list[Dataset], base: dict[str, Any] | None) -> dict:
    values = TrainingConfig().model_dump(mode="json")
    values.update(PRESETS["quick"])
    if datasets:
        # The largest set (the newest among equals): a held-out set uploaded after the training
        # set is smaller and must not become the default training data.
        train = max(datasets, key=lambda d: (d.row_count, d.id))
        values["dataset_id"] = train.id
        values["val_percent"] = train.val_percent
    values["max_length"] = min(values["max_length"], project.max_length)
    values.update(base or {})
    return values


def job_form(
    request: Request,
    session: SessionDep,
    user: User,
    project: Project,
    settings: SettingsDep,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = form_context(session, user, project, settings, values)
    return render(
        request, "partials/job_form.html", status_code=status_code, errors=errors or {}, **context
    )


@router.get("/projects/{project_id}/runs/new")
def new_run_page(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
    preset: str = "quick",
    clone: int | None = None,
) -> HTMLResponse:
    datasets = dataset_service.list_datasets(session, project)
    base: dict[str, Any] = dict(PRESETS.get(preset, {}))
    if clone is not None:
        source = service.get_job(session, user, clone)
        base = {
            **source.config,
            "dataset_id": source.dataset_id,
            "val_dataset_id": source.val_dataset_id,
            "cloned_from": source.id,
            "continue_from": service.parent_number(session, source),
        }
    values = default_values(project, datasets, base)
    values["preset"] = preset if clone is None else ""
    context = form_context(session, user, project, settings, values)
    return render(request, "pages/new_run.html", errors={}, **context)


@router.post("/projects/{project_id}/jobs")
async def create_job(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    t: TranslatorDep,
    htmx: IsHtmx,
) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if k != "target_modules"}
    targets = [str(v) for v in form.getlist("target_modules")]
    dataset_id, val_dataset_id = (
        _int_or_none(values, "dataset_id"),
        _int_or_none(values, "val_dataset_id"),
    )
    cloned_from = _int_or_none(values, "cloned_from")
    continue_from = _int_or_none(values, "continue_from")
    try:
        config = config_from_form(values, targets)
        # The form holds the whole config and the validation choice, also when cloning.
        source = service.get_job(session, user, cloned_from) if cloned_from else None
        job = service.create_job(
            session,
            project,
            dataset_id,
            config,
            cloned_from=source,
            val_dataset_id=val_dataset_id,
            continue_from=continue_from,
        )
    except InvalidInput as exc:
        errors = {d["field"]: d["message"] for d in field_details(exc.errors, t)}
        values["target_modules"] = targets
        return job_form(request, session, user, project, settings, values, errors, 422)
    return redirect(f"/jobs/{job.id}", htmx)


@router.post("/projects/{project_id}/jobs/estimate")
async def estimate(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
) -> HTMLResponse:
    form = await request.form()
    values = {k: v for k, v in form.items() if k != "target_modules"}
    result = None
    error = None
    where = None
    try:
        config = service.parse_config(config_from_form(values, []))
        where = placement.place(config.processes, estimates.train_workers())
        if _int_or_none(values, "val_dataset_id"):  # a held-out set: every row trains
            config = config.model_copy(update={"val_percent": 0})
        dataset = _project_dataset(session, project, values, "dataset_id")
        if dataset is not None:
            choice = model_choices.find_choice(session, user, project.base_model, settings.data_dir)
            params = choice.parameter_count if choice else None
            val_dataset = _project_dataset(session, project, values, "val_dataset_id")
            workers = estimates.train_workers()
            result = estimates.estimate(config, dataset, params, workers, val_dataset)
    except AppError as exc:
        error = exc
    return render(
        request,
        "partials/job_estimate.html",
        estimate=result,
        error=error,
        placement=where,
        processes=config.processes if where else 1,
    )


def _project_dataset(
    session: SessionDep, project: Project, values: dict[str, Any], name: str
) -> Dataset | None:
    dataset_id = _int_or_none(values, name)
    dataset = session.get(Dataset, dataset_id) if dataset_id is not None else None
    return dataset if dataset is not None and dataset.project_id == project.id else None


def job_context(session: SessionDep, job: TrainingJob) -> dict[str, Any]:
    return {
        "job": job,
        "position": service.queue_position(session, job),
        "points": service.metric_history(session, job.id),
    }


@router.get("/jobs/{job_id}")
def job_page(
    job_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
) -> HTMLResponse:
    job = service.get_job(session, user, job_id)
    log_tail = service.log_tail(job, settings.paths)
    return render(
        request,
        "pages/job.html",
        log_tail=log_tail,
        lineage=lineage.job_lineage(session, job),
        **job_context(session, job),
    )


@router.get("/jobs/{job_id}/status")
def job_status(
    job_id: RowId, request: Request, session: SessionDep, user: CurrentUser, _t: TranslatorDep
) -> HTMLResponse:
    job = service.get_job(session, user, job_id)
    return render(request, "partials/job_status.html", **job_context(session, job))


@router.post("/jobs/{job_id}/{action}")
def job_action(
    job_id: RowId,
    action: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
) -> HTMLResponse:
    job = service.get_job(session, user, job_id)
    error = None
    try:
        if action in ("cancel", "stop"):
            service.request_stop(session, job, action)
        elif action == "resume":
            service.resume_job(session, job)
        else:
            raise AppError("errors.unknown_action", action=action)
    except AppError as exc:
        error = t(exc.key, **exc.params)
    session.refresh(job)
    return render(request, "partials/job_status.html", error=error, **job_context(session, job))
