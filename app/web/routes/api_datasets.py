"""JSON API for datasets: upload (multipart) with row-level validation, rows, files, settings."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from app import datasets as validation
from app.datasets.csvfile import FIELDS as MAPPABLE_FIELDS
from app.errors import FieldError, InvalidInput, NotFound
from app.schemas.common import RowId
from app.schemas.datasets import DatasetPublic, DatasetsPublic, DatasetUpdate, RowsPublic
from app.services import datasets as service
from app.services import template_preview, text_limits, uploads, worker_results
from app.services.issue_text import issues_public
from app.web.deps import CurrentUser, ProjectDep, SessionDep, SettingsDep, TranslatorDep

router = APIRouter(prefix="/api", tags=["datasets"])


def parse_options(
    format: str | None,
    container: str | None,
    column_map: str | None,
    keep_valid: bool,
    name: str | None = None,
) -> service.UploadOptions:
    """Turn the form fields into UploadOptions, naming the field that is wrong."""
    errors = []
    schema = cont = None
    mapping = None
    try:
        schema = validation.Schema(format) if format and format != "auto" else None
    except ValueError:
        errors.append(FieldError("format", "errors.bad_format", {"value": format}))
    try:
        cont = validation.Container(container) if container and container != "auto" else None
    except ValueError:
        errors.append(FieldError("container", "errors.bad_container", {"value": container}))
    if column_map:
        try:
            mapping = json.loads(column_map)
            if not isinstance(mapping, dict) or set(mapping) - set(MAPPABLE_FIELDS):
                raise ValueError
            if not all(isinstance(column, str) for column in mapping.values()):
                raise ValueError  # a column is named by a string (a list was a 500)
        except ValueError:
            errors.append(
                FieldError(
                    "column_map", "errors.bad_column_map", {"fields": ", ".join(MAPPABLE_FIELDS)}
                )
            )
    limit = text_limits.DATASET_NAME_MAX_CHARS
    if name and len(name) > limit:
        errors.append(FieldError("name", "errors.name_too_long", {"max": limit, "got": len(name)}))
    if errors:
        raise InvalidInput(errors)
    return service.UploadOptions(cont, schema, mapping, keep_valid, name or None)


def rejected_body(t: TranslatorDep, exc: service.DatasetRejected) -> dict[str, Any]:
    report = exc.report
    return {
        "error": {
            "code": exc.code,
            "message": t(exc.key, **exc.params),
            "details": {
                "upload_token": exc.token,
                "total_rows": report.total_rows,
                "valid_rows": report.valid_rows,
                "invalid_rows": report.invalid_rows,
                "counts": report.counts,
                "issues_truncated": report.issues_truncated,
                "format": report.format,
                "container": report.container,
            },
        },
        "errors": issues_public(t, report),
    }


@router.post("/projects/{project_id}/datasets", status_code=201, response_model=DatasetPublic)
def upload_dataset(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    file: Annotated[UploadFile, File()],
    format: Annotated[str | None, Form()] = None,
    container: Annotated[str | None, Form()] = None,
    column_map: Annotated[str | None, Form()] = None,
    keep_valid: Annotated[bool, Form()] = False,
    name: Annotated[str | None, Form()] = None,
) -> Any:
    options = parse_options(format, container, column_map, keep_valid, name)
    received = uploads.receive(file.file, file.filename, settings.paths, settings.max_upload_bytes)
    try:
        dataset = service.ingest(session, project, received, options, settings.paths)
    except service.DatasetRejected as exc:
        return JSONResponse(rejected_body(t, exc), status_code=422)
    return DatasetPublic.model_validate(dataset)


@router.get("/projects/{project_id}/datasets", response_model=DatasetsPublic)
def list_datasets(project: ProjectDep, session: SessionDep) -> DatasetsPublic:
    items = service.list_datasets(session, project)
    return DatasetsPublic(data=[DatasetPublic.model_validate(d) for d in items], count=len(items))


@router.post(
    "/projects/{project_id}/uploads/{token}/accept", status_code=201, response_model=DatasetPublic
)
def accept_upload(
    token: str, project: ProjectDep, session: SessionDep, settings: SettingsDep
) -> DatasetPublic:
    return DatasetPublic.model_validate(
        service.accept_staged(session, project, token, settings.paths)
    )


@router.post(
    "/projects/{project_id}/uploads/{token}/revalidate",
    status_code=201,
    response_model=DatasetPublic,
)
def revalidate_upload(
    token: str,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    t: TranslatorDep,
    format: Annotated[str | None, Form()] = None,
    container: Annotated[str | None, Form()] = None,
    column_map: Annotated[str | None, Form()] = None,
    keep_valid: Annotated[bool, Form()] = False,
) -> Any:
    options = parse_options(format, container, column_map, keep_valid)
    try:
        dataset = service.revalidate_staged(session, project, token, options, settings.paths)
    except service.DatasetRejected as exc:
        return JSONResponse(rejected_body(t, exc), status_code=422)
    return DatasetPublic.model_validate(dataset)


@router.get("/projects/{project_id}/uploads/{token}/report")
def staged_report(token: str, project: ProjectDep, settings: SettingsDep, t: TranslatorDep) -> Any:
    report = service.staged_report(project, token, settings.paths)
    return {**report.model_dump(mode="json"), "issues": issues_public(t, report)}


@router.delete("/projects/{project_id}/uploads/{token}", status_code=204)
def discard_upload(token: str, project: ProjectDep, settings: SettingsDep) -> Response:
    service.discard_staged(project, token, settings.paths)
    return Response(status_code=204)


@router.get("/datasets/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: RowId, session: SessionDep, user: CurrentUser) -> DatasetPublic:
    return DatasetPublic.model_validate(service.get_dataset(session, user, dataset_id))


@router.patch("/datasets/{dataset_id}", response_model=DatasetPublic)
def update_dataset(
    dataset_id: RowId, body: DatasetUpdate, session: SessionDep, user: CurrentUser
) -> DatasetPublic:
    dataset = service.get_dataset(session, user, dataset_id)
    if body.name is not None:
        dataset.name = body.name
    if body.val_percent is not None:
        dataset.val_percent = body.val_percent
    session.commit()
    return DatasetPublic.model_validate(dataset)


@router.delete("/datasets/{dataset_id}", status_code=204)
def delete_dataset(
    dataset_id: RowId, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    service.delete_dataset(session, service.get_dataset(session, user, dataset_id), settings.paths)
    return Response(status_code=204)


@router.get("/datasets/{dataset_id}/rows", response_model=RowsPublic)
def dataset_rows(
    dataset_id: RowId,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> RowsPublic:
    dataset = service.get_dataset(session, user, dataset_id)
    path = service.dataset_file(dataset, settings.paths, "normalized")
    rows = validation.read_preview(path, offset, limit)
    return RowsPublic(data=rows, offset=offset, limit=limit, total=dataset.row_count)


@router.get("/datasets/{dataset_id}/files/{kind}")
def dataset_download(
    dataset_id: RowId, kind: str, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> FileResponse:
    """original | normalized | dropped | report"""
    dataset = service.get_dataset(session, user, dataset_id)
    path = service.dataset_file(dataset, settings.paths, kind)
    stem = dataset.name.rsplit(".", 1)[0]
    suffix = {
        "report": ".report.json",
        "dropped": ".dropped.jsonl",
        "normalized": ".normalized.jsonl",
    }
    filename = dataset.original_filename if kind == "original" else f"{stem}{suffix[kind]}"
    return FileResponse(path, filename=filename)


@router.post("/datasets/{dataset_id}/analyze", status_code=202, response_model=DatasetPublic)
def analyze_dataset(dataset_id: RowId, session: SessionDep, user: CurrentUser) -> DatasetPublic:
    dataset = service.get_dataset(session, user, dataset_id)
    service.request_stats(session, dataset)
    return DatasetPublic.model_validate(dataset)


class PreviewRequest(BaseModel):
    row: int = 1


@router.post("/datasets/{dataset_id}/preview", status_code=202)
def request_preview(
    dataset_id: RowId, body: PreviewRequest, session: SessionDep, user: CurrentUser
) -> dict[str, str]:
    """Render a row through the project's tokenizer and chat template on a worker."""
    dataset = service.get_dataset(session, user, dataset_id)
    return {"request_id": template_preview.request_preview(dataset, body.row, user.id)}


@router.get("/previews/{request_id}")
def get_preview(request_id: str, user: CurrentUser) -> dict[str, Any]:
    result = worker_results.get_result(request_id, user.id)
    if result is None:
        raise NotFound("errors.preview_not_found")
    return result
