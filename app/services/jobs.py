"""Training jobs: create from the LoRA form or the API, control (stop, cancel, resume, clone),
list, and read their metric history. Status changes go through `job_states`."""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.artifacts import ArtifactMissing, get_store
from app.errors import Conflict, FieldError, InvalidInput, NotFound
from app.models import (
    Dataset,
    JobStatus,
    MetricPoint,
    ModelVersion,
    Project,
    TrainingJob,
    User,
)
from app.queue import TaskName, enqueue_or_fail
from app.redis_client import get_redis
from app.redis_keys import job_stop_key
from app.schemas.training import TrainingConfig
from app.services import estimates, job_states, lineage, placement
from app.services.access import project_scope
from app.services.estimates import estimate_steps
from app.storage import DataDir

logger = logging.getLogger(__name__)


def parse_config(raw: dict[str, Any]) -> TrainingConfig:
    """Validate a config, turning pydantic's errors into field errors users can act on."""
    try:
        return TrainingConfig.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "config"
            errors.append(FieldError(field, "errors.config_field", {"detail": err["msg"]}))
        raise InvalidInput(errors) from exc


def get_job(session: Session, owner: User, job_id: int) -> TrainingJob:
    job = session.scalar(
        select(TrainingJob)
        .join(Project, Project.id == TrainingJob.project_id)
        .where(TrainingJob.id == job_id, project_scope(owner))
    )
    if job is None:
        raise NotFound("errors.job_not_found", id=job_id)
    return job


def list_jobs(session: Session, project: Project) -> list[TrainingJob]:
    query = select(TrainingJob).where(TrainingJob.project_id == project.id)
    return list(session.scalars(query.order_by(TrainingJob.id.desc())))


def queue_position(session: Session, job: TrainingJob) -> int | None:
    """1 for the next job to start; None when the job is not waiting."""
    if job.status != JobStatus.QUEUED:
        return None
    ahead = session.scalar(
        select(func.count(TrainingJob.id)).where(
            TrainingJob.status == JobStatus.QUEUED, TrainingJob.id < job.id
        )
    )
    return int(ahead or 0) + 1


def _dataset_of(session: Session, project: Project, dataset_id: int | None) -> Dataset:
    dataset = session.get(Dataset, dataset_id) if dataset_id is not None else None
    if dataset is None or dataset.project_id != project.id:
        raise InvalidInput([FieldError("dataset_id", "errors.pick_dataset")])
    return dataset


def training_queue(config: TrainingConfig) -> str:
    """The queue the run's needs fit (app.services.placement); InvalidInput when none does."""
    return placement.require_placement(config.processes, estimates.train_workers())


def _enqueue(session: Session, job: TrainingJob, queue: str) -> None:
    enqueue_or_fail(session, job, TaskName.TRAIN, job_states.fail_job, queue=queue)


def create_job(
    session: Session,
    project: Project,
    dataset_id: int | None,
    raw_config: dict[str, Any],
    cloned_from: TrainingJob | None = None,
    val_dataset_id: int | None = None,
    continue_from: int | None = None,
) -> TrainingJob:
    """Queue a run. With `val_dataset_id` (another dataset of the project) that set is the
    validation data and the whole training set trains: the frozen config says val_percent 0.
    With `continue_from` (a version number of the project) the run starts from that version's
    adapter, whose rank, alpha and target modules replace the config's (app.services.lineage)."""
    parent = None
    if continue_from is not None:
        parent = lineage.parent_version(session, project, continue_from)
    config = parse_config(lineage.inherit_adapter(raw_config, parent) if parent else raw_config)
    dataset = _dataset_of(session, project, dataset_id)
    val_dataset = None
    if val_dataset_id is not None:
        val_dataset = session.get(Dataset, val_dataset_id)
        if val_dataset is None or val_dataset.project_id != project.id:
            raise InvalidInput([FieldError("val_dataset_id", "errors.pick_val_dataset")])
        if val_dataset.id == dataset.id:
            raise InvalidInput([FieldError("val_dataset_id", "errors.val_dataset_is_train")])
        config = config.model_copy(update={"val_percent": 0})
    if config.early_stopping_patience and config.val_percent == 0 and val_dataset is None:
        # Early stopping watches the eval loss: without validation data it could never act.
        raise InvalidInput(
            [FieldError("early_stopping_patience", "errors.early_stopping_needs_validation")]
        )
    train_rows = math.floor(dataset.row_count * (100 - config.val_percent) / 100)
    if train_rows < 1:
        raise InvalidInput([FieldError("val_percent", "errors.no_training_rows")])
    queue = training_queue(config)
    job = TrainingJob(
        project_id=project.id,
        dataset_id=dataset.id,
        dataset_sha256=dataset.sha256,
        dataset_name=dataset.name,
        val_dataset_id=val_dataset.id if val_dataset else None,
        val_dataset_sha256=val_dataset.sha256 if val_dataset else None,
        base_model=project.base_model,
        config=config.model_dump(mode="json"),
        status=JobStatus.QUEUED,
        total_steps=estimate_steps(config, dataset.row_count),
        cloned_from_id=cloned_from.id if cloned_from else None,
        parent_version_id=parent.id if parent else None,
        # What the form promised, kept to set against the actual run when it ends.
        estimate=estimates.for_job(session, project, config, dataset, val_dataset),
    )
    session.add(job)
    session.commit()
    _enqueue(session, job, queue)
    return job


def request_stop(session: Session, job: TrainingJob, mode: str) -> TrainingJob:
    """mode "stop": end now and keep the adapter as it stands; "cancel": end, keep checkpoints."""
    if job.status == JobStatus.QUEUED and mode == "cancel":
        job_states.cancel_job(session, job.id)
    elif job.status == JobStatus.RUNNING:
        job.stop_requested = mode
        session.commit()
        get_redis().set(job_stop_key(job.id), mode, ex=7 * 24 * 3600)
    else:
        raise Conflict("errors.job_not_stoppable", status=job.status)
    session.refresh(job)
    return job


def resume_job(session: Session, job: TrainingJob) -> TrainingJob:
    if job.status not in (JobStatus.CANCELLED, JobStatus.FAILED):
        raise Conflict("errors.job_not_resumable", status=job.status)
    queue = training_queue(TrainingConfig.model_validate(job.config))  # still fits somewhere?
    get_redis().delete(job_stop_key(job.id))
    job_states.requeue_job(session, job.id)
    session.refresh(job)
    _enqueue(session, job, queue)
    return job


def clone_job(
    session: Session,
    job: TrainingJob,
    overrides: dict[str, Any],
    dataset_id: int | None = None,
    val_dataset_id: int | None = None,
    continue_from: int | None = None,
) -> TrainingJob:
    """The retrain loop: same project, the old config with the user's changes (and the old
    validation set unless another is given). `continue_from` is the caller's choice: see
    `parent_number` for the old job's."""
    config = {**job.config, **overrides}
    return create_job(
        session,
        job.project,
        dataset_id or job.dataset_id,
        config,
        cloned_from=job,
        val_dataset_id=val_dataset_id or job.val_dataset_id,
        continue_from=continue_from,
    )


def parent_number(session: Session, job: TrainingJob) -> int | None:
    """The version number the job continued from (None: the base model, or a deleted version)."""
    return lineage.version_number(session, job.parent_version_id)


def metric_history(session: Session, job_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(MetricPoint).where(MetricPoint.job_id == job_id).order_by(MetricPoint.step)
    )
    return [row.data for row in rows]


def list_versions(session: Session, project: Project) -> list[ModelVersion]:
    query = select(ModelVersion).where(ModelVersion.project_id == project.id)
    return list(session.scalars(query.order_by(ModelVersion.version.desc())))


def log_tail(job: TrainingJob, paths: DataDir, lines: int = 200) -> list[str]:
    """The end of the run's log. A run that trained on another machine left it in the artifact
    store when it ended; while it runs, the page gets its lines from the event stream."""
    path = paths.run_log(job.id)
    if not path.exists() and job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
        try:
            path = get_store().fetch_file(paths.key(path))
        except ArtifactMissing:
            return []
        except Exception:  # the store is unreachable: the page still renders, without the log
            logger.warning("could not fetch the log of job %s", job.id, exc_info=True)
            return []
    return path.read_text(encoding="utf-8").splitlines()[-lines:] if path.exists() else []
