"""JSON API for exports of a model version: list the formats with their status, ask for one
(cached per version and format), and download a finished file (streamed, with HTTP Range)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from app.errors import NotFound
from app.models import Export, ModelVersion, Project
from app.schemas.common import RowId
from app.schemas.exports import ExportCreate, ExportPublic, ExportsPublic
from app.services import exports as service
from app.web.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api", tags=["exports"])


def export_public(version: ModelVersion, fmt: str, export: Export | None) -> ExportPublic:
    if export is None:
        return ExportPublic(format=fmt, status="none")
    ready = service.is_ready(export)
    return ExportPublic(
        format=fmt,
        status=export.status,
        progress=export.progress,
        size_bytes=export.size_bytes if ready else None,
        sha256=export.sha256 if ready else None,
        verification=export.verification,
        error_code=export.error_code,
        error_params=export.error_params,
        error=export.error,
        download_url=f"/api/versions/{version.id}/download?format={fmt}" if ready else None,
        finished_at=export.finished_at,
    )


def exports_public(version: ModelVersion, project: Project, rows: dict) -> ExportsPublic:  # type: ignore[type-arg]
    return ExportsPublic(
        version_id=version.id,
        name=f"{project.slug}:v{version.version}",
        data=[export_public(version, fmt, export) for fmt, export in rows.items()],
    )


@router.get("/versions/{version_id}/exports", response_model=ExportsPublic)
def list_exports(version_id: RowId, session: SessionDep, user: CurrentUser) -> ExportsPublic:
    version, project = service.get_version(session, user, version_id)
    return exports_public(version, project, service.list_exports(session, version))


@router.post("/versions/{version_id}/exports", response_model=ExportPublic)
def create_export(
    version_id: RowId,
    body: ExportCreate,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
) -> ExportPublic:
    """202 when a new export was queued; 200 with the cached (or running) one otherwise."""
    version, _ = service.get_version(session, user, version_id)
    export, queued = service.request_export(session, version, body.format)
    response.status_code = 202 if queued else 200
    return export_public(version, body.format, export)


@router.get("/versions/{version_id}/download")
def download(
    version_id: RowId,
    session: SessionDep,
    user: CurrentUser,
    format: Annotated[str, Query(max_length=32)],
    part: Literal["file", "modelfile"] = "file",
) -> FileResponse:
    """The finished file, streamed from disk (never read into memory); honours Range.
    `part=modelfile`: the Ollama Modelfile written beside a GGUF (`ollama create NAME -f
    Modelfile` in a folder holding both)."""
    version, project = service.get_version(session, user, version_id)
    export, path = service.ready_file(session, version, format)
    if part == "modelfile":
        modelfile = service.path_of(export, ".Modelfile")
        if modelfile is None:
            raise NotFound("errors.export_no_modelfile", format=format)
        return FileResponse(modelfile, media_type="text/plain; charset=utf-8", filename="Modelfile")
    media = "application/octet-stream" if path.suffix == ".gguf" else "application/zip"
    return FileResponse(
        path,
        media_type=media,
        filename=service.file_name(project, version, format),
        headers={"X-Content-SHA256": export.sha256 or ""},
    )
