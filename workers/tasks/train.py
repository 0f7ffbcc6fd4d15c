"""`train` queue: run one training job. Thin: claim the row, call workers.training.train, record
the outcome (a new model version, or the reason it failed). Never retried automatically."""

from __future__ import annotations

import logging
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
from workers.celery_app import celery_app
from workers.ml.errors import ModelLoadError
from workers.reporting import BusReporter, RedisStopFlag, job_heartbeat
from workers.training.checkpoint import checkpoint_dirs
from workers.training.errors import TrainingError
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
            adapter_path=str(result.adapter_path),
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


def _parent_adapter(session: Session, job: TrainingJob) -> tuple[int | str, Path | None] | None:
    """(version number, adapter folder) of the version the job continues from; the folder is
    None when the version or its files are gone. None for a run from the base model."""
    if job.parent_version_id is None:
        return None
    parent = session.get(ModelVersion, job.parent_version_id)
    if parent is None:
        return "?", None
    folder = Path(parent.adapter_path)
    return parent.version, folder if (folder / "adapter_model.safetensors").is_file() else None


@celery_app.task(name=TaskName.TRAIN, bind=True, acks_late=True, max_retries=0)
def train_job(self: Task, job_id: int) -> dict[str, Any] | None:
    settings = get_settings()
    with session_scope() as session:
        if not job_states.claim_job(session, job_id, worker=str(self.request.hostname)):
            logger.info("job %s is not queued (redelivered or cancelled); skipping", job_id)
            return None
        job = session.get(TrainingJob, job_id)
        assert job is not None
        config = TrainingConfig.model_validate(job.config)
        base_model, dataset_id = job.base_model, job.dataset_id
        wants_val_set = job.val_dataset_sha256 is not None
        val_dataset_id = job.val_dataset_id
        parent = _parent_adapter(session, job)

    run_dir = settings.paths.run(job_id)
    checkpoints = checkpoint_dirs(run_dir)
    resume_from = checkpoints[-1] if checkpoints else None
    reporter = BusReporter(job_id, settings.paths.run_log(job_id))
    get_redis().delete(job_stop_key(job_id))
    data_path = settings.paths.normalized(dataset_id) if dataset_id else None
    val_path = settings.paths.normalized(val_dataset_id) if val_dataset_id else None

    try:
        if data_path is None or not data_path.exists():
            raise TrainingError(
                "The job's dataset was deleted; clone the job with another one.",
                JobError.DATASET_DELETED,
            )
        if wants_val_set and (val_path is None or not val_path.exists()):
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
        with job_heartbeat(job_id, settings.job_heartbeat_s):
            result = train(
                config,
                loader_source(base_model),
                settings.data_dir,
                data_path,
                run_dir,
                reporter,
                RedisStopFlag(job_id),
                val_path=val_path,
                resume_from=resume_from,
                init_adapter=parent[1] if parent else None,
            )
    except (TrainingError, ModelLoadError, ValueError) as exc:
        # Errors with a message written for users (OOM advice, empty dataset, QLoRA on CPU...):
        # their code and params are what the job page shows; an untyped ValueError is internal.
        code, params = error_of(exc)
        reporter.log(f"failed: {exc}")
        reporter.flush()
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
