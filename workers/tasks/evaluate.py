"""`eval` queue: run one evaluation. Thin: claim the row, read the test set, call
workers.evaluation.run.evaluate with an engine of its own, store the report.

It runs on the training workers (a fresh process per task, one at a time per accelerator), not
in the chat worker: an evaluation is minutes of full-speed generation, and chat keeps its own
engine and its own process, so answers keep streaming while it runs.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

from celery import Task

from app import events
from app.config import get_settings
from app.db import session_scope
from app.error_codes import CodedError, EvalError, error_of
from app.event_types import EvaluationProgress
from app.models import Evaluation, EvaluationExample
from app.queue import TaskName
from app.redis_client import get_redis
from app.redis_keys import evaluation_stream_key
from app.services import evaluation_states as states
from workers.artifacts import local_dataset, local_tree
from workers.celery_app import celery_app
from workers.evaluation.run import (
    EvaluationCancelled,
    GenerationSettings,
    ModelUnderTest,
    evaluate,
    general_rows,
    test_rows,
)
from workers.inference import InferenceEngine, InferenceError, Scheduler
from workers.ml.errors import ModelLoadError
from workers.reporting import RowHeartbeat
from workers.training.data import read_rows, split_rows

logger = logging.getLogger(__name__)
MEMORY_BUDGET_BYTES = 16 * 1024**3
PROGRESS_EVERY_S = 0.5


def _load_rows(source: dict[str, Any]) -> list[Any]:
    """The test set's conversations: a dataset's normalized rows, or a job's validation split
    re-drawn exactly as training drew it (same rows, seed and share)."""
    # By dataset id (fetched from the artifact store); evaluations queued before the store
    # existed name the file by path.
    path = local_dataset(source["dataset_id"]) if "dataset_id" in source else Path(source["path"])
    if not path.exists():
        raise CodedError("The evaluation's test set was deleted.", EvalError.TEST_SET_DELETED)
    rows = read_rows(path)
    split = source.get("split")
    if split is not None:
        _, rows = split_rows(rows, int(split["val_percent"]), int(split["seed"]))
    return rows


class _Reporter:
    """Progress to the database (at most twice a second) and the evaluation's event stream;
    the cancel flag from the database."""

    def __init__(self, evaluation_id: int) -> None:
        self.evaluation_id = evaluation_id
        self.redis = get_redis()
        self._last = 0.0
        self._asked = 0.0

    def progress(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        value = {"phase": phase, "done": done, "total": total}
        try:
            with session_scope() as session:
                states.record_progress(session, self.evaluation_id, value)
            events.publish(
                self.redis,
                evaluation_stream_key(self.evaluation_id),
                EvaluationProgress(**value),
            )
        except Exception:
            logger.warning("evaluation %s: progress not recorded", self.evaluation_id)

    def should_stop(self) -> bool:
        """The cancel flag, read from the database at most once a second."""
        now = time.monotonic()
        if now - self._asked < PROGRESS_EVERY_S * 2:
            return False
        self._asked = now
        try:
            with session_scope() as session:
                return states.cancel_requested(session, self.evaluation_id)
        except Exception:  # keep going through a database blip
            return False


@celery_app.task(name=TaskName.EVALUATE, bind=True, acks_late=True, max_retries=0)
def run_evaluation(self: Task, evaluation_id: int) -> dict[str, Any] | None:
    with session_scope() as session:
        if not states.claim(session, evaluation_id, worker=str(self.request.hostname)):
            logger.info("evaluation %s is not queued; skipping", evaluation_id)
            return None
        evaluation = session.get(Evaluation, evaluation_id)
        assert evaluation is not None
        settings = dict(evaluation.settings)
    reporter = _Reporter(evaluation_id)
    # 16 rows per decode step: twice the chat's batch, since nobody waits for a first token.
    engine = InferenceEngine(get_settings().data_dir, MEMORY_BUDGET_BYTES, max_batch_size=16)
    scheduler = Scheduler(engine)
    try:
        beat = partial(states.heartbeat, evaluation_id=evaluation_id)
        with RowHeartbeat(beat, get_settings().job_heartbeat_s, f"evaluation {evaluation_id}"):
            rows, skipped = test_rows(_load_rows(settings["source"]))
            if not rows:
                raise CodedError(
                    "The test set has no row that ends in an answer to compare with.",
                    EvalError.NO_TEST_ROWS,
                )
            models = [
                ModelUnderTest(
                    m["label"],
                    m.get("adapter_id"),
                    local_tree(m["adapter_path"]) if m.get("adapter_path") else None,
                    m.get("template"),
                )
                for m in settings["models"]
            ]
            scheduler.start()
            report = evaluate(
                engine,
                scheduler,
                settings["base"],
                models,
                rows,
                GenerationSettings(
                    max_new_tokens=int(settings["max_new_tokens"]),
                    temperature=float(settings["temperature"]),
                    top_p=float(settings["top_p"]),
                    seed=int(settings.get("seed", 0)),
                ),
                general=general_rows() if settings.get("include_general") else (),
                progress=reporter.progress,
                should_stop=reporter.should_stop,
            )
    except EvaluationCancelled:
        with session_scope() as session:
            states.cancel(session, evaluation_id)
        return None
    except (CodedError, InferenceError, ModelLoadError, ValueError) as exc:
        code, params = error_of(exc)
        if code == "internal":
            code, params = EvalError.EVAL_FAILED, {"detail": str(exc)[:1000]}
        with session_scope() as session:
            states.fail(session, evaluation_id, code, str(exc), params)
        return None
    except BaseException as exc:
        logger.exception("evaluation %s crashed", evaluation_id)
        code, params = error_of(exc)
        with session_scope() as session:
            states.fail(session, evaluation_id, code, f"{type(exc).__name__}: {exc}", params)
        raise
    finally:
        scheduler.close()

    examples = [
        EvaluationExample(
            evaluation_id=evaluation_id,
            position=example["position"],
            subset=example["subset"],
            messages=example["messages"],
            reference=example["reference"],
            outputs=example["outputs"],
        )
        for example in report.examples
    ]
    methods = {
        **report.methods,
        "language": report.language,
        "skipped_rows": skipped,
        "general_rows": report.general_rows,
    }
    with session_scope() as session:
        states.finish(
            session, evaluation_id, results=report.results, methods=methods, examples=examples
        )
    return {"results": report.results}
