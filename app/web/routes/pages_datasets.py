"""Browser pages for datasets: upload with its report, the dataset page, preview and stats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.responses import HTMLResponse, Response

from app import datasets as validation
from app.errors import AppError, InvalidInput
from app.models import Dataset
from app.schemas.common import RowId
from app.services import datasets as service
from app.services import template_preview, uploads, worker_results
from app.services.issue_text import issue_message
from app.web.deps import (
    CurrentUser,
    IsHtmx,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TranslatorDep,
)
from app.web.errors import field_details
from app.web.routes.api_datasets import parse_options
from app.web.routes.pages_projects import redirect
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)
PAGE_SIZE = 10


def report_view(
    request: Request,
    t: TranslatorDep,
    project_id: int,
    exc: service.DatasetRejected,
    staged_path: Path | None = None,
) -> HTMLResponse:
    report = exc.report
    issues = [(i, issue_message(t, i)) for i in report.issues[:200]]
    columns: list[str] = []
    if exc.token and "missing_column" in report.counts and staged_path is not None:
        columns = validation.csv_columns(staged_path)
    return render(
        request,
        "partials/upload_report.html",
        status_code=422,
        project_id=project_id,
        report=report,
        issues=issues,
        token=exc.token,
        message=t(exc.key, **exc.params),
        columns=columns,
    )


def upload_error(request: Request, t: TranslatorDep, exc: AppError) -> HTMLResponse:
    return render(
        request,
        "partials/upload_error.html",
        status_code=exc.status_code,
        message=t(exc.key, **exc.params),
    )


@router.post("/projects/{project_id}/datasets")
def upload(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    htmx: IsHtmx,
    file: Annotated[UploadFile, File()],
    format: Annotated[str | None, Form()] = None,
) -> Response:
    try:
        options = parse_options(format, None, None, keep_valid=False)
        received = uploads.receive(
            file.file, file.filename, settings.paths, settings.max_upload_bytes
        )
        dataset = service.ingest(session, project, received, options, settings.paths)
    except service.DatasetRejected as exc:
        staged = received.path if exc.token else None
        return report_view(request, t, project.id, exc, staged)
    except AppError as exc:
        return upload_error(request, t, exc)
    return redirect(f"/datasets/{dataset.id}", htmx)


@router.post("/projects/{project_id}/uploads/{token}/accept")
def accept(
    token: str,
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    htmx: IsHtmx,
) -> Response:
    try:
        dataset = service.accept_staged(session, project, token, settings.paths)
    except AppError as exc:
        return upload_error(request, t, exc)
    return redirect(f"/datasets/{dataset.id}", htmx)


@router.post("/projects/{project_id}/uploads/{token}/map")
def map_columns(
    token: str,
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    htmx: IsHtmx,
    instruction: Annotated[str, Form()] = "",
    input: Annotated[str, Form()] = "",
    output: Annotated[str, Form()] = "",
    system: Annotated[str, Form()] = "",
) -> Response:
    chosen = {"instruction": instruction, "input": input, "output": output, "system": system}
    mapping = {field: column for field, column in chosen.items() if column}
    options = service.UploadOptions(column_map=mapping)
    try:
        dataset = service.revalidate_staged(session, project, token, options, settings.paths)
    except service.DatasetRejected as exc:
        staged = settings.paths.staging(token) if exc.token else None
        original = next(iter(sorted(staged.glob("original*"))), None) if staged else None
        return report_view(request, t, project.id, exc, original)
    except AppError as exc:
        return upload_error(request, t, exc)
    return redirect(f"/datasets/{dataset.id}", htmx)


@router.delete("/projects/{project_id}/uploads/{token}")
def discard(
    token: str, request: Request, project: ProjectDep, settings: SettingsDep, t: TranslatorDep
) -> Response:
    try:
        service.discard_staged(project, token, settings.paths)
    except AppError as exc:
        return upload_error(request, t, exc)
    return render(request, "partials/upload_discarded.html")


@router.get("/datasets/{dataset_id}")
def dataset_page(
    dataset_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
) -> HTMLResponse:
    dataset = service.get_dataset(session, user, dataset_id)
    rows = rows_page(dataset, settings, 0)
    return render(request, "pages/dataset.html", dataset=dataset, project=dataset.project, **rows)


def rows_page(dataset: Dataset, settings: SettingsDep, page: int) -> dict[str, object]:
    path = service.dataset_file(dataset, settings.paths, "normalized")
    total = dataset.row_count
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    rows = validation.read_preview(path, page * PAGE_SIZE, PAGE_SIZE)
    return {"rows": rows, "page": page, "pages": pages, "first_row": page * PAGE_SIZE}


@router.get("/datasets/{dataset_id}/rows")
def dataset_rows(
    dataset_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
    page: int = 0,
) -> HTMLResponse:
    dataset = service.get_dataset(session, user, dataset_id)
    return render(
        request, "partials/dataset_rows.html", dataset=dataset, **rows_page(dataset, settings, page)
    )


@router.get("/datasets/{dataset_id}/stats")
def dataset_stats(
    dataset_id: RowId, request: Request, session: SessionDep, user: CurrentUser, _t: TranslatorDep
) -> HTMLResponse:
    dataset = service.get_dataset(session, user, dataset_id)
    return render(request, "partials/dataset_stats.html", dataset=dataset)


@router.post("/datasets/{dataset_id}/analyze")
def reanalyze(
    dataset_id: RowId, request: Request, session: SessionDep, user: CurrentUser, _t: TranslatorDep
) -> HTMLResponse:
    dataset = service.get_dataset(session, user, dataset_id)
    service.request_stats(session, dataset)
    return render(request, "partials/dataset_stats.html", dataset=dataset)


@router.post("/datasets/{dataset_id}/settings")
def dataset_settings(
    dataset_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    val_percent: Annotated[int, Form()] = 10,
) -> HTMLResponse:
    dataset = service.get_dataset(session, user, dataset_id)
    error = None
    if 0 <= val_percent <= 50:
        dataset.val_percent = val_percent
        session.commit()
    else:
        error = t("datasets.val_percent_range")
    return render(
        request,
        "partials/dataset_split.html",
        dataset=dataset,
        error=error,
        saved=error is None,
        status_code=422 if error else 200,
    )


@router.delete("/datasets/{dataset_id}")
def delete(
    dataset_id: RowId, session: SessionDep, user: CurrentUser, settings: SettingsDep, htmx: IsHtmx
) -> Response:
    dataset = service.get_dataset(session, user, dataset_id)
    project_id = dataset.project_id
    service.delete_dataset(session, dataset, settings.paths)
    return redirect(f"/projects/{project_id}", htmx)


@router.post("/datasets/{dataset_id}/preview")
def preview(
    dataset_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    row: Annotated[int, Form()] = 1,
) -> HTMLResponse:
    dataset = service.get_dataset(session, user, dataset_id)
    try:
        request_id = template_preview.request_preview(dataset, row, user.id)
    except AppError as exc:
        message = (
            " ".join(d["message"] for d in field_details(exc.errors, t))
            if isinstance(exc, InvalidInput)
            else t(exc.key, **exc.params)
        )
        return render(request, "partials/upload_error.html", message=message)
    return render(request, "partials/template_preview.html", request_id=request_id, result=None)


@router.get("/previews/{request_id}")
def preview_result(
    request_id: str, request: Request, user: CurrentUser, _t: TranslatorDep
) -> HTMLResponse:
    # Unknown, expired and another user's ids read the same: "expired" (the poll then stops).
    result = worker_results.get_result(request_id, user.id) or {
        "status": "failed",
        "error": "expired",
    }
    return render(request, "partials/template_preview.html", request_id=request_id, result=result)
