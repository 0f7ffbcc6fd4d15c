"""Datasets: validate an upload, store it only once the user has decided, list and delete.

Flow: `uploads.receive` stages the file → `ingest` validates it (streaming) → if every row is
valid it is stored; if some rows are invalid nothing is stored and the staged upload waits
for the user to `accept_staged` (keep the valid rows) or `discard_staged`; if no row is
valid, or the file itself is unusable, the staging folder is removed at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import datasets as validation
from app.artifacts import get_store
from app.errors import AppError, Conflict, NotFound
from app.models import Dataset, Project, User
from app.queue import TaskName, enqueue
from app.services.access import project_scope
from app.services.uploads import ReceivedFile
from app.storage import NORMALIZED_NAME, DataDir, move_into_place, remove_tree

logger = logging.getLogger(__name__)

NORMALIZED = NORMALIZED_NAME
DROPPED = "dropped.jsonl"
META = "upload.json"
REPORT = "report.json"


@dataclass
class UploadOptions:
    container: validation.Container | None = None
    schema: validation.Schema | None = None
    column_map: dict[str, str] | None = None
    keep_valid: bool = False
    name: str | None = None


class DatasetRejected(AppError):
    """The upload has problems; `token` is set when the user may still keep the valid rows."""

    status_code = 422
    code = "invalid_dataset"

    def __init__(self, report: validation.ValidationReport, token: str | None) -> None:
        key = "errors.dataset_has_invalid_rows" if token else "errors.dataset_unusable"
        super().__init__(key, invalid=report.invalid_rows, total=report.total_rows)
        self.report = report
        self.token = token


@dataclass
class Staged:
    """What a staging folder holds besides the files: who uploaded what, and its report."""

    project_id: int
    filename: str
    original: str
    sha256: str
    size: int
    options: dict[str, Any] = field(default_factory=dict)


def _options_json(options: UploadOptions) -> dict[str, Any]:
    return {
        "container": options.container.value if options.container else None,
        "schema": options.schema.value if options.schema else None,
        "column_map": options.column_map,
        "name": options.name,
    }


def _read_staged(data_dir: DataDir, project: Project, token: str) -> tuple[Path, Staged]:
    try:
        folder = data_dir.staging(token)
        staged = Staged(**json.loads((folder / META).read_text(encoding="utf-8")))
    except (ValueError, OSError) as exc:
        raise NotFound("errors.upload_not_found") from exc
    if staged.project_id != project.id:
        raise NotFound("errors.upload_not_found")
    return folder, staged


def _find_duplicate(session: Session, project: Project, sha256: str) -> Dataset | None:
    return session.scalar(
        select(Dataset).where(Dataset.project_id == project.id, Dataset.sha256 == sha256)
    )


def _validate(folder: Path, staged: Staged, options: UploadOptions) -> validation.ValidationReport:
    report = validation.validate_file(
        folder / staged.original,
        folder / NORMALIZED,
        folder / DROPPED,
        filename=staged.filename,
        container=options.container,
        schema=options.schema,
        column_map=options.column_map,
    )
    (folder / REPORT).write_text(report.model_dump_json(), encoding="utf-8")
    return report


def ingest(
    session: Session,
    project: Project,
    received: ReceivedFile,
    options: UploadOptions,
    data_dir: DataDir,
) -> Dataset:
    staged = Staged(
        project_id=project.id,
        filename=received.filename,
        original=received.path.name,
        sha256=received.sha256,
        size=received.size,
        options=_options_json(options),
    )
    try:
        duplicate = _find_duplicate(session, project, received.sha256)
        if duplicate is not None:
            raise Conflict("errors.dataset_duplicate", name=duplicate.name, id=duplicate.id)
        (received.folder / META).write_text(json.dumps(staged.__dict__), encoding="utf-8")
        return _decide(session, project, data_dir, received.folder, staged, options, received.token)
    except BaseException:
        # Keep the staging folder only when the user has a decision to make.
        if not _is_pending(received.folder):
            remove_tree(received.folder)
        raise


def _is_pending(folder: Path) -> bool:
    return (folder / ".pending").exists()


def _decide(
    session: Session,
    project: Project,
    data_dir: DataDir,
    folder: Path,
    staged: Staged,
    options: UploadOptions,
    token: str,
) -> Dataset:
    report = _validate(folder, staged, options)
    if not report.ok:
        (folder / ".pending").unlink(missing_ok=True)
        raise DatasetRejected(report, token=None)
    if report.invalid_rows and not options.keep_valid:
        (folder / ".pending").touch()
        raise DatasetRejected(report, token=token)
    return _store(session, project, data_dir, folder, staged, report, options)


def _store(
    session: Session,
    project: Project,
    data_dir: DataDir,
    folder: Path,
    staged: Staged,
    report: validation.ValidationReport,
    options: UploadOptions,
) -> Dataset:
    (folder / ".pending").unlink(missing_ok=True)
    dataset = Dataset(
        project_id=project.id,
        name=(options.name or staged.filename)[:255],
        original_filename=staged.filename,
        container=report.container.value if report.container else "",
        format=report.format.value if report.format else "",
        sha256=staged.sha256,
        size_bytes=staged.size,
        row_count=report.valid_rows,
        dropped_count=report.invalid_rows,
        warning_count=report.warnings,
        report=report.model_dump(mode="json"),
        stats_status="pending",
    )
    session.add(dataset)
    session.flush()
    dest = data_dir.dataset(dataset.id)
    # The database just issued this id, so a folder already there is an orphan (SQLite reuses
    # the ids of deleted rows): it must not block or mix with the new files.
    remove_tree(dest)
    try:
        move_into_place(folder, dest)
        # Workers on other machines read it from the artifact store (nothing moves locally).
        get_store().publish_tree(data_dir.key(dest))
        session.commit()
    except BaseException:
        session.rollback()
        get_store().delete(data_dir.key(dest))
        raise
    request_stats(session, dataset)
    return dataset


def request_stats(session: Session, dataset: Dataset) -> None:
    """Queue token statistics; a queue outage leaves a retryable message, not an error page.

    "pending" is committed before the task is queued: written after, it could land on top of
    what a quick worker had already recorded (a model folder gone fails in milliseconds)."""
    dataset.stats_status, dataset.stats_error = "pending", None
    session.commit()
    try:
        enqueue(TaskName.ANALYZE_DATASET, dataset.id)
    except Exception as exc:  # kombu raises several types when Redis is down
        logger.warning("could not queue statistics for dataset %s: %s", dataset.id, exc)
        dataset.stats_status, dataset.stats_error = "failed", "queue_unavailable"
        session.commit()


def accept_staged(session: Session, project: Project, token: str, data_dir: DataDir) -> Dataset:
    """The user chose to keep the valid rows of a staged upload."""
    folder, staged = _read_staged(data_dir, project, token)
    if _find_duplicate(session, project, staged.sha256) is not None:
        remove_tree(folder)
        raise Conflict("errors.dataset_duplicate_gone")
    report = validation.ValidationReport.model_validate_json((folder / REPORT).read_text())
    options = _options_from(staged.options)
    options.keep_valid = True
    return _store(session, project, data_dir, folder, staged, report, options)


def revalidate_staged(
    session: Session, project: Project, token: str, options: UploadOptions, data_dir: DataDir
) -> Dataset:
    """Validate a staged upload again with other options (format, CSV column mapping)."""
    folder, staged = _read_staged(data_dir, project, token)
    staged.options = _options_json(options)
    (folder / META).write_text(json.dumps(staged.__dict__), encoding="utf-8")
    try:
        return _decide(session, project, data_dir, folder, staged, options, token)
    except DatasetRejected as exc:
        if exc.token is None:
            remove_tree(folder)
        raise


def discard_staged(project: Project, token: str, data_dir: DataDir) -> None:
    folder, _ = _read_staged(data_dir, project, token)
    remove_tree(folder)


def staged_report(project: Project, token: str, data_dir: DataDir) -> validation.ValidationReport:
    folder, _ = _read_staged(data_dir, project, token)
    return validation.ValidationReport.model_validate_json((folder / REPORT).read_text())


def _options_from(raw: dict[str, Any]) -> UploadOptions:
    return UploadOptions(
        container=validation.Container(raw["container"]) if raw.get("container") else None,
        schema=validation.Schema(raw["schema"]) if raw.get("schema") else None,
        column_map=raw.get("column_map"),
        name=raw.get("name"),
    )


def list_datasets(session: Session, project: Project) -> list[Dataset]:
    query = select(Dataset).where(Dataset.project_id == project.id).order_by(Dataset.id.desc())
    return list(session.scalars(query))


def get_dataset(session: Session, owner: User, dataset_id: int) -> Dataset:
    dataset = session.scalar(
        select(Dataset)
        .join(Project, Project.id == Dataset.project_id)
        .where(Dataset.id == dataset_id, project_scope(owner))
    )
    if dataset is None:
        raise NotFound("errors.dataset_not_found", id=dataset_id)
    return dataset


def dataset_file(dataset: Dataset, data_dir: DataDir, kind: str) -> Path:
    names = {"normalized": NORMALIZED, "dropped": DROPPED, "report": REPORT}
    folder = data_dir.dataset(dataset.id)
    if kind == "original":
        matches = sorted(folder.glob("original*"))
        if matches:
            return matches[0]
    elif kind in names and (folder / names[kind]).exists():
        return folder / names[kind]
    raise NotFound("errors.dataset_file_missing", kind=kind)


def delete_dataset(session: Session, dataset: Dataset, data_dir: DataDir) -> None:
    session.delete(dataset)
    session.commit()
    get_store().delete(data_dir.key(data_dir.dataset(dataset.id)))
