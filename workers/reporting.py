"""The worker's side of a training job's live view: events to the job's Redis stream, metric
history to the database in batches, a log file, heartbeats, and the stop flag.

train() only sees the Reporter protocol and a should_stop callable (workers.training.reporter);
this module binds them to Redis and the database.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app import events
from app.db import session_scope
from app.event_types import JobEvent, JobLog, JobMetric, JobStart
from app.models import MetricPoint, TrainingJob
from app.redis_client import get_redis
from app.redis_keys import job_stop_key
from app.services import job_states
from workers.background_publish import BackgroundPublisher

logger = logging.getLogger(__name__)

FLUSH_EVERY_EVENTS = 10
FLUSH_EVERY_S = 2.0


class BusReporter:
    """Reporter for a Celery-run job. Never raises: a Redis hiccup must not kill a training run."""

    def __init__(self, job_id: int, log_path: Path) -> None:
        self.job_id = job_id
        self.log_path = log_path
        self.redis = get_redis()
        self._pending: list[dict[str, Any]] = []
        self._publisher: BackgroundPublisher | None = None
        self._last_flush = time.monotonic()

    def _publish(self, kind: str, build: Callable[[], JobEvent]) -> None:
        """Build (validate) and append one event; a bad event or a Redis blip is only logged."""
        try:
            events.publish_job(self.redis, self.job_id, build())
        except Exception as exc:
            logger.warning("could not publish a %s event for job %s: %s", kind, self.job_id, exc)

    def start(self, total_steps: int, info: dict[str, Any]) -> None:
        resumed = int(info.get("resumed_from_step") or 0)
        with session_scope() as session:
            # Points after the checkpoint we resume from belong to the lost session: drop them so
            # the curve continues from the checkpoint instead of doubling back.
            session.execute(
                delete(MetricPoint).where(
                    MetricPoint.job_id == self.job_id, MetricPoint.step > resumed
                )
            )
            # A worker killed between two flushes computed steps the database never got; the
            # live stream still has them, so the curve up to the checkpoint stays unbroken.
            stored = set(
                session.scalars(select(MetricPoint.step).where(MetricPoint.job_id == self.job_id))
            )
            try:
                missed = {
                    event.step: event.model_dump(exclude={"type"})
                    for _id, event in events.read_job_events(self.redis, self.job_id)
                    if isinstance(event, JobMetric)
                    and event.step <= resumed
                    and event.step not in stored
                }
            except Exception:  # Redis lost the stream too: nothing more to recover
                missed = {}
            session.add_all(
                MetricPoint(job_id=self.job_id, step=step, data=data)
                for step, data in sorted(missed.items())
            )
            job = session.get(TrainingJob, self.job_id)
            if job is not None:
                job.total_steps = total_steps
        self._publish("start", lambda: JobStart(total_steps=total_steps, info=info))
        self.log(f"training {total_steps} steps: {json.dumps(info, default=str)}")

    def metrics(self, event: dict[str, Any]) -> None:
        self._publish("metric", lambda: JobMetric.model_validate(event))
        self._pending.append(event)
        due = time.monotonic() - self._last_flush >= FLUSH_EVERY_S
        if len(self._pending) >= FLUSH_EVERY_EVENTS or due:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        points, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        try:
            with session_scope() as session:
                steps = [p["step"] for p in points]
                session.execute(
                    delete(MetricPoint).where(
                        MetricPoint.job_id == self.job_id, MetricPoint.step.in_(steps)
                    )
                )
                session.add_all(
                    MetricPoint(job_id=self.job_id, step=p["step"], data=p) for p in points
                )
                job = session.get(TrainingJob, self.job_id)
                if job is not None:
                    job.step, job.epoch = points[-1]["step"], float(points[-1]["epoch"])
        except Exception:
            logger.exception(
                "could not store metrics of job %s; keeping them for later", self.job_id
            )
            self._pending = points + self._pending

    def log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError:
            logger.warning("could not write the log of job %s", self.job_id)
        self._publish("log", lambda: JobLog(line=line))

    def checkpoint(self, path: Path) -> None:
        """Publish the run's checkpoints to the artifact store in the background, so a run
        whose machine is lost resumes elsewhere from here (nothing to do with the local store)."""
        if self._publisher is None:
            self._publisher = BackgroundPublisher(path.parent)
        self._publisher.request()

    def settle(self) -> None:
        """Store the metrics still pending and wait for the checkpoint upload under way; the
        task then publishes the run's files itself (never two writers of one manifest)."""
        self.flush()
        if self._publisher is not None:
            self._publisher.settle()

    def end(self, result: Any) -> None:
        self.settle()


class RedisStopFlag:
    """should_stop() for train(): reads the stop key the web sets ("stop" or "cancel")."""

    def __init__(self, job_id: int) -> None:
        self.key = job_stop_key(job_id)
        self.redis = get_redis()

    def __call__(self) -> str | None:
        try:
            value = self.redis.get(self.key)
        except Exception:  # keep training through a Redis blip; the next step asks again
            return None
        return value if value in ("stop", "cancel") else None


class RowHeartbeat:
    """Calls `beat(session)` every `interval_s` while a task runs (refreshing its row's
    heartbeat_at); the web fails a running job or evaluation whose beat stops."""

    def __init__(self, beat: Callable[[Session], object], interval_s: float, what: str) -> None:
        self.beat = beat
        self.interval_s = interval_s
        self.what = what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="row-heartbeat", daemon=True)

    def __enter__(self) -> RowHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with session_scope() as session:
                    self.beat(session)
            except Exception:  # a database blip; the next beat tries again
                logger.warning("%s heartbeat failed", self.what, exc_info=True)


def job_heartbeat(job_id: int, interval_s: float) -> RowHeartbeat:
    """Refreshes a training job's heartbeat_at while it runs."""
    return RowHeartbeat(partial(job_states.heartbeat, job_id=job_id), interval_s, f"job {job_id}")
