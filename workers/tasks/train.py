"""`train` queue: run one training job. Thin: claim the row, call workers.training.train, record
the outcome (a new model version, or the reason it failed). Never retried automatically."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from celery import Task
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope
from app.error_codes import JobError, error_of
from app.models import ModelVersion, TrainingJob
from app.queue import TaskName
from app.redis_client import get_redis
from app.redis_keys import job_stop_key
from app.schemas.training import TrainingConfig
from app.services import job_states
from app.services.model_choices import loader_source
from workers.artifacts import local_dataset, local_tree, publish_file, publish_tree, store_key
from workers.celery_app import celery_app
from workers.disk import DiskFull
from workers.ml.errors import ModelLoadError
from workers.reporting import BusReporter, RedisStopFlag, job_heartbeat
from workers.training.checkpoint import checkpoint_dirs
from workers.training.errors import TrainingError
from workers.training.launch import train_with_torchrun
from workers.training.loop import train
from workers.training.result import TrainResult

logger = logging.getLogger(__name__)


def _register_version(job_id: int, result: TrainResult) -> int:
    """The finished adapter becomes the project's next version, with everything to rerun it."""
    with session_scope() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        latest = session.scalar(
            select(func.max(ModelVersion.version)).where(ModelVersion.project_id == job.project_id)
        )
        version = ModelVersion(
            project_id=job.project_id,
            job_id=job.id,
            version=int(latest or 0) + 1,
            adapter_path=store_key(result.adapter_path),  # any machine finds it by this
            base_model=job.base_model,
            config=job.config,
            dataset_sha256=job.dataset_sha256,
            dataset_name=job.dataset_name,
            libraries=result.versions,
            metrics={
                "train_loss": result.train_loss,
                "last_train_loss": result.last_train_loss,
                "eval_loss": result.eval_loss,  # the last evaluation's
                # The evaluation with the lowest eval loss; with keep_best the adapter is its.
                "best_step": result.best_step,
                "best_eval_loss": result.best_eval_loss,
                "adapter_step": result.adapter_step,
                "early_stopped_at_step": result.early_stopped_at_step,
                "steps": result.steps,
                "epochs": result.epochs,
                "tokens_seen": result.tokens_seen,
                "elapsed_s": result.elapsed_s,
            },
            # Stopped by the user, or by early stopping (metrics say at which step).
            stopped_early=result.status == "stopped" or result.early_stopped_at_step is not None,
            parent_id=job.parent_version_id,
        )
        session.add(version)
        session.flush()
        return version.version


CHECKPOINTS = "checkpoints"  # under the run's folder (workers.training.checkpoint)


def _publish_run(job_id: int, result: TrainResult | None) -> None:
    """Put what the run made into the artifact store (nothing moves with the local store):
    checkpoints (a resume may run on another machine), the adapter, the log the job page
    shows. After a failure (result None) only what is there, as far as it goes."""
    paths = get_settings().paths
    try:
        if (paths.run(job_id) / CHECKPOINTS).is_dir():
            publish_tree(paths.run(job_id) / CHECKPOINTS)
        if result is not None and result.adapter_path is not None:
            publish_tree(result.adapter_path)
        if paths.run_log(job_id).is_file():
            publish_file(paths.run_log(job_id))
    except Exception:
        if result is not None:
            raise  # a finished run whose adapter cannot be stored fails (the caller says why)
        logger.warning("job %s: could not store its files after the failure", job_id, exc_info=True)


def _parent_adapter(session: Session, job: TrainingJob) -> tuple[int | str, Path | None] | None:
    """(version number, adapter folder) of the version the job continues from; the folder is
    None when the version or its files are gone. None for a run from the base model."""
    if job.parent_version_id is None:
        return None
    parent = session.get(ModelVersion, job.parent_version_id)
    if parent is None:
        return "?", None
    folder = local_tree(parent.adapter_path)  # made on another machine: from the store
    return parent.version, folder if (folder / "adapter_model.safetensors").is_file() else None


@dataclass(frozen=True)
class ClaimedJob:
    """What the task read from the row when it claimed it."""

    job_id: int
    config: TrainingConfig
    base_model: str
    dataset_id: int | None
    val_dataset_id: int | None
    wants_val_set: bool
    parent: tuple[int | str, Path | None] | None


@celery_app.task(name=TaskName.TRAIN, bind=True, acks_late=True, max_retries=0)
def train_job(self: Task, job_id: int) -> dict[str, Any] | None:
    with session_scope() as session:
        if not job_states.claim_job(session, job_id, worker=str(self.request.hostname)):
            logger.info("job %s is not queued (redelivered or cancelled); skipping", job_id)
            return None
        job = session.get(TrainingJob, job_id)
        assert job is not None
        claimed = ClaimedJob(
            job_id=job_id,
            config=TrainingConfig.model_validate(job.config),
            base_model=job.base_model,
            dataset_id=job.dataset_id,
            val_dataset_id=job.val_dataset_id,
            wants_val_set=job.val_dataset_sha256 is not None,
            parent=_parent_adapter(session, job),
        )
    # The heartbeat covers all the job does once claimed, not only the training: fetching its
    # files from the store and publishing what it made (a large adapter on a slow link) can
    # take longer than the web's reaper waits for a beat.
    with job_heartbeat(job_id, get_settings().job_heartbeat_s):
        return _run_claimed(claimed)


def _run_claimed(claimed: ClaimedJob) -> dict[str, Any] | None:
    settings = get_settings()
    job_id, config, parent = claimed.job_id, claimed.config, claimed.parent
    run_dir = settings.paths.run(job_id)
    reporter = BusReporter(job_id, settings.paths.run_log(job_id))
    get_redis().delete(job_stop_key(job_id))

    try:
        # A resume may land on another machine than the first attempt: its checkpoints come
        # along (a store that cannot be reached fails the job here, with its reason).
        local_tree(run_dir / CHECKPOINTS)
        checkpoints = checkpoint_dirs(run_dir)
        resume_from = checkpoints[-1] if checkpoints else None
        data_path = local_dataset(claimed.dataset_id) if claimed.dataset_id else None
        val_path = local_dataset(claimed.val_dataset_id) if claimed.val_dataset_id else None
        if data_path is None or not data_path.exists():
            raise TrainingError(
                "The job's dataset was deleted; clone the job with another one.",
                JobError.DATASET_DELETED,
            )
        if claimed.wants_val_set and (val_path is None or not val_path.exists()):
            raise TrainingError(
                "The job's validation dataset was deleted; clone the job and pick another "
                "validation set or the split.",
                JobError.VALIDATION_SET_DELETED,
            )
        if resume_from is None and parent is not None and parent[1] is None:
            raise TrainingError(
                f"Version v{parent[0]}, which this run continues from, was deleted.",
                JobError.PARENT_VERSION_MISSING,
                version=parent[0],
            )
        # Several processes: torchrun runs the same loop in each; its rank 0 reports to the job.
        run = partial(train_with_torchrun, job_id=job_id) if config.processes > 1 else train
        result = run(
            config,
            loader_source(claimed.base_model),
            settings.data_dir,
            data_path,
            run_dir,
            reporter,
            RedisStopFlag(job_id),
            val_path=val_path,
            resume_from=resume_from,
            init_adapter=parent[1] if parent else None,
        )
        _publish_run(job_id, result)
    except (TrainingError, ModelLoadError, DiskFull, ValueError) as exc:
        # Errors with a message written for users (OOM advice, empty dataset, QLoRA on CPU, a
        # full disk...): their code and params are what the job page shows; an untyped
        # ValueError is internal.
        code, params = error_of(exc)
        reporter.log(f"failed: {exc}")
        reporter.settle()  # the checkpoint upload under way first: one writer at a time
        _publish_run(job_id, None)  # its checkpoints, for a resume elsewhere
        with session_scope() as session:
            job_states.fail_job(session, job_id, code, str(exc), params)
        return None
    except BaseException as exc:
        logger.exception("job %s crashed", job_id)
        reporter.log(f"crashed: {type(exc).__name__}: {exc}")
        reporter.flush()
        code, params = error_of(exc)
        with session_scope() as session:
            job_states.fail_job(session, job_id, code, f"{type(exc).__name__}: {exc}", params)
        raise

    try:
        return _record_result(job_id, result, reporter)
    except BaseException as exc:
        # Trained, but the outcome could not be written (the database went away...): say so
        # now rather than leave the job "running" until the reaper calls its worker lost.
        logger.exception("job %s: its result could not be recorded", job_id)
        code, params = error_of(exc)
        try:
            with session_scope() as session:
                job_states.fail_job(session, job_id, code, f"{type(exc).__name__}: {exc}", params)
        except Exception:
            logger.warning("job %s: nor its failure; the reaper will fail it", job_id)
        raise


def _record_result(job_id: int, result: TrainResult, reporter: BusReporter) -> dict[str, Any]:
    """The finished run's row: its last checkpoint, then cancelled, or a new version."""
    summary = result.as_dict()
    with session_scope() as session:
        job = session.get(TrainingJob, job_id)
        if job is not None and result.checkpoint_path:
            job.checkpoint_path = str(result.checkpoint_path)
    if result.status == "cancelled":
        with session_scope() as session:
            job_states.cancel_job(session, job_id, result=summary)
        return summary
    summary["version"] = _register_version(job_id, result)
    with session_scope() as session:
        job_states.finish_job(session, job_id, summary)
    reporter.log(f"finished: version v{summary['version']}")
    return summary
