"""Exports of model versions: which formats exist, asking for one (cached per version and
format), and where the finished file is. The work runs on the `export` queue
(workers/tasks/export.py); the web only streams finished files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.artifacts import ArtifactMissing, get_store
from app.config import get_settings
from app.error_codes import ExportError
from app.errors import Conflict, FieldError, InvalidInput, NotFound
from app.models import Export, JobStatus, ModelVersion, Project, User
from app.queue import TaskName, enqueue_or_fail
from app.services.access import project_scope
from app.services.job_states import compare_and_set, now

# What each format is for, in the order pages list them.
FORMATS = ("adapter", "merged", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m")
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def file_name(project: Project, version: ModelVersion, fmt: str) -> str:
    """The download's name: `<slug>-v<N>-<format>.<ext>`, built from ids, never user input."""
    extension = "gguf" if fmt.startswith("gguf-") else "zip"
    return f"{project.slug}-v{version.version}-{fmt}.{extension}"


def get_version(session: Session, owner: User, version_id: int) -> tuple[ModelVersion, Project]:
    row = session.execute(
        select(ModelVersion, Project)
        .join(Project, Project.id == ModelVersion.project_id)
        .where(ModelVersion.id == version_id, project_scope(owner))
    ).first()
    if row is None:
        raise NotFound("errors.version_not_found", id=version_id)
    return row[0], row[1]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInput(
            [FieldError("format", "errors.export_format", {"formats": ", ".join(FORMATS)})]
        )
    return fmt


def _key(export: Export, suffix: str = "") -> str | None:
    """The artifact store's key of a finished export's file (None: not finished)."""
    if export.status != JobStatus.SUCCEEDED or not export.file_name:
        return None
    paths = get_settings().paths
    name = Path(export.file_name)
    return paths.key(
        paths.export_dir(export.version_id) / (name.with_suffix(suffix) if suffix else name)
    )


def is_ready(export: Export) -> bool:
    """The export finished and its file is in the store (it may have been deleted)."""
    key = _key(export)
    return key is not None and get_store().exists(key)


def path_of(export: Export, suffix: str = "") -> Path | None:
    """The finished file on this machine, fetched from the artifact store when it is elsewhere
    (`suffix` ".Modelfile": the Modelfile beside a GGUF); None when there is none."""
    key = _key(export, suffix)
    if key is None:
        return None
    try:
        return get_store().fetch_file(key)
    except ArtifactMissing:
        return None


def list_exports(session: Session, version: ModelVersion) -> dict[str, Export | None]:
    """format -> its export row (None where never asked for), in FORMATS order."""
    rows = {
        e.format: e for e in session.scalars(select(Export).where(Export.version_id == version.id))
    }
    return {fmt: rows.get(fmt) for fmt in FORMATS}


def request_export(session: Session, version: ModelVersion, fmt: str) -> tuple[Export, bool]:
    """The export of `version` in `fmt`: the cached one when its file is there (or it is under
    way), else a new task. Returns (export, queued_now)."""
    check_format(fmt)
    export = session.scalar(
        select(Export).where(Export.version_id == version.id, Export.format == fmt)
    )
    if export is not None and (export.status in ACTIVE or is_ready(export)):
        return export, False
    if export is None:
        export = Export(version_id=version.id, format=fmt, status=JobStatus.QUEUED)
        session.add(export)
    else:  # failed, or its file was removed: start again
        export.status = JobStatus.QUEUED
        export.error = export.error_code = export.error_params = None
        export.verification = export.progress = None
        export.finished_at = export.heartbeat_at = None
    session.commit()
    enqueue_or_fail(session, export, TaskName.EXPORT, fail)
    return export, True


def ready_file(session: Session, version: ModelVersion, fmt: str) -> tuple[Export, Path]:
    """The finished file of one format, or 409 saying it is not ready (or 404 never asked)."""
    check_format(fmt)
    export = session.scalar(
        select(Export).where(Export.version_id == version.id, Export.format == fmt)
    )
    if export is None:
        raise NotFound("errors.export_not_requested", format=fmt)
    path = path_of(export)
    if path is None:
        raise Conflict("errors.export_not_ready", format=fmt, status=export.status)
    return export, path


# --- status moves (the worker's side) ---------------------------------------------------------


def claim(session: Session, export_id: int) -> bool:
    return compare_and_set(
        session, Export, export_id, (JobStatus.QUEUED,), status=JobStatus.RUNNING,
        started_at=now(), heartbeat_at=now(),
    )  # fmt: skip


def heartbeat(session: Session, export_id: int) -> bool:
    return compare_and_set(session, Export, export_id, (JobStatus.RUNNING,), heartbeat_at=now())


def record_progress(session: Session, export_id: int, progress: dict[str, object]) -> bool:
    return compare_and_set(session, Export, export_id, (JobStatus.RUNNING,), progress=progress)


def finish(
    session: Session,
    export_id: int,
    *,
    file_name: str,
    size_bytes: int,
    sha256: str,
    verification: dict[str, object],
) -> bool:
    return compare_and_set(
        session,
        Export,
        export_id,
        (JobStatus.RUNNING,),
        status=JobStatus.SUCCEEDED,
        file_name=file_name,
        size_bytes=size_bytes,
        sha256=sha256,
        verification=verification,
        finished_at=now(),
    )


def fail(
    session: Session,
    export_id: int,
    code: str,
    message: str,
    params: dict[str, object] | None = None,
    verification: dict[str, object] | None = None,
) -> bool:
    return compare_and_set(
        session,
        Export,
        export_id,
        ACTIVE,
        status=JobStatus.FAILED,
        error_code=code,
        error=message,
        error_params=params or {},
        verification=verification,
        finished_at=now(),
    )


def reap_lost(session: Session, timeout_s: float) -> list[int]:
    """Fail running exports whose worker stopped beating (killed, machine lost): the row would
    otherwise say "running" forever and block a new request for the format."""
    cutoff = now() - timedelta(seconds=timeout_s)
    stale = session.scalars(
        select(Export.id).where(
            Export.status == JobStatus.RUNNING,
            # Rows claimed before heartbeats existed (migration 0010) go by their start.
            func.coalesce(Export.heartbeat_at, Export.started_at) < cutoff,
        )
    ).all()
    message = (
        f"The worker stopped responding (no heartbeat for {int(timeout_s)} s): it was killed or "
        "its machine was lost. Request the export again."
    )
    params = {"seconds": int(timeout_s)}
    return [
        export_id
        for export_id in stale
        if fail(session, export_id, ExportError.EXPORT_WORKER_LOST, message, params)
    ]
