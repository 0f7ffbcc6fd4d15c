"""A pool child that died under its task: fail the task's row at once, saying how it died.

Training and evaluations run in a prefork child (one task per child, app.supervisor). When the
kernel's OOM killer SIGKILLs that child, nothing in it runs again: its `except` clauses never
record a reason, and the row would stay "running" until the web's reaper gives up on its
heartbeat (45 s) with "stopped responding". The worker's main process does see it: billiard
notices the child's exit and Celery raises WorkerLostError("Worker exited prematurely: signal 9
(SIGKILL) Job: 0.") for the task there, then sends `task_failure`. This handler turns that into
the row's failure: SIGKILL reads "killed by signal 9 — usually out of memory" with the memory
advice (the config's batch size and max length); any other death says the signal or exit code.

The reaper stays the net for what this cannot see: a whole worker or machine lost. Exports run
in the main worker's thread pool, not in a child, so a crash there is a lost worker, which the
reaper fails by the export's own heartbeat.
"""

from __future__ import annotations

import logging
import re
import signal
from dataclasses import dataclass
from typing import Any

from billiard.exceptions import WorkerLostError

from app.config import get_settings
from app.db import session_scope
from app.error_codes import EvalError, JobError, english
from app.models import Evaluation, JobStatus, TrainingJob
from app.queue import TaskName
from app.services import evaluation_states, job_states

logger = logging.getLogger(__name__)

# billiard's wording (billiard.common.human_status): "signal 9 (SIGKILL)" or "exitcode 1".
_STATUS = re.compile(r"exited prematurely: (?P<status>.+?)(?: Job: \d+)?\.?$")
_SIGNAL = re.compile(r"^signal (?P<number>\d+)")


@dataclass(frozen=True)
class Death:
    """How a pool child ended: `status` as billiard words it, `signal` when a signal did it."""

    status: str
    signal: int | None

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signal or 0).name
        except ValueError:
            return f"signal {self.signal}"

    @property
    def out_of_memory(self) -> bool:
        """SIGKILL: what the OOM killer sends (an operator's `kill -9` reads the same)."""
        return self.signal == signal.SIGKILL


def death_of(error: BaseException) -> Death:
    match = _STATUS.search(str(error))
    status = match.group("status") if match else str(error)
    number = _SIGNAL.match(status)
    return Death(status, int(number.group("number")) if number else None)


def _ours(status: str, row_worker: str | None, worker: str | None) -> bool:
    """The row is this lost child's: still queued (it died before claiming), or running on this
    worker. A redelivered copy that died here must not fail a run another worker is doing."""
    if status == JobStatus.QUEUED:
        return True
    return status == JobStatus.RUNNING and (worker is None or row_worker == worker)


def fail_training(job_id: int, worker: str | None, death: Death) -> bool:
    from workers.reporting import BusReporter  # the main process has it loaded already

    with session_scope() as session:
        job = session.get(TrainingJob, job_id)
        if job is None or not _ours(job.status, job.worker, worker):
            return False
        params: dict[str, Any]
        if death.out_of_memory:
            config = job.config or {}
            code = JobError.KILLED
            params = {
                "signal": death.signal,
                "signal_name": death.signal_name,
                "batch_size": config.get("batch_size"),
                "max_length": config.get("max_length"),
            }
        else:
            code, params = JobError.PROCESS_DIED, {"status": death.status}
        message = english(code, params)
        moved = job_states.fail_job(session, job_id, code, message, params)
    if moved:  # the job page's log says it too, after the child's last line
        reporter = BusReporter(job_id, get_settings().paths.run_log(job_id))
        reporter.log(f"failed: {message}")
    return moved


def fail_evaluation(evaluation_id: int, worker: str | None, death: Death) -> bool:
    with session_scope() as session:
        evaluation = session.get(Evaluation, evaluation_id)
        if evaluation is None or not _ours(evaluation.status, evaluation.worker, worker):
            return False
        params: dict[str, Any]
        if death.out_of_memory:
            code = EvalError.EVAL_KILLED
            params = {"signal": death.signal, "signal_name": death.signal_name}
        else:
            detail = f"the evaluation process ended unexpectedly ({death.status})"
            code, params = EvalError.EVAL_FAILED, {"detail": detail}
        message = english(code, params)
        return evaluation_states.fail(session, evaluation_id, code, message, params)


_FAILERS = {TaskName.TRAIN.value: fail_training, TaskName.EVALUATE.value: fail_evaluation}


def on_task_failure(
    sender: Any = None,
    exception: BaseException | None = None,
    args: Any = None,
    **_: Any,
) -> None:
    """`task_failure` receiver. Only a WorkerLostError means the child died; it is raised in the
    main process, so this runs there (other failures are handled by the tasks themselves)."""
    fail = _FAILERS.get(getattr(sender, "name", ""))
    if fail is None or not isinstance(exception, WorkerLostError) or not args:
        return
    # Celery puts the lost task's request on the task's stack while the signal is sent.
    request = getattr(sender, "request", None)
    worker = getattr(request, "hostname", None)
    death = death_of(exception)
    try:
        if fail(int(args[0]), worker, death):
            logger.warning("%s %s: its process died (%s)", sender.name, args[0], death.status)
    except Exception:  # the reaper still fails the row once its heartbeat is old
        logger.exception("could not record the lost process of %s %s", sender.name, args[0])
