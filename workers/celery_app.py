"""The Celery app workers run: `celery -A workers.celery_app worker -Q train` (or `tunelab worker`).

Configuration comes from `app.queue.celery_config`, shared with the web's client, so both sides
agree on serializer, routes and acknowledgement policy.
"""

from __future__ import annotations

from typing import Any

from celery.signals import (
    celeryd_after_setup,
    task_failure,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from app.config import get_settings
from app.gpus import training_slots
from app.queue import Queue, make_celery
from app.services.placement import worker_queues
from workers.after_fork import forget_inherited_clients
from workers.heartbeat import start_heartbeat, stop_heartbeat
from workers.lost_child import on_task_failure
from workers.reconciler import start_reconciler, stop_reconciler

celery_app = make_celery("tunelab-worker")
celery_app.conf.include = [
    "workers.tasks.system",
    "workers.tasks.data",
    "workers.tasks.models",
    "workers.tasks.train",
    "workers.tasks.infer",
    "workers.tasks.evaluate",
    "workers.tasks.export",
]
# A training or evaluation child killed under its task (the OOM killer) fails its row at once.
task_failure.connect(on_task_failure)


@celeryd_after_setup.connect
def _add_group_queues(sender: str, instance: Any, **_: Any) -> None:
    """A training worker also consumes the queues of the multi-process runs it has slots for
    (`train.cuda4` on a 4-GPU machine), so a run only reaches a worker it fits
    (app.services.placement)."""
    queues = instance.app.amqp.queues
    if Queue.TRAIN.value in queues.consume_from:
        for name in worker_queues(*training_slots(get_settings().train_processes)):
            queues.select_add(name)


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    queues = sorted(sender.app.amqp.queues.consume_from.keys())
    start_heartbeat(sender.hostname, queues)
    start_reconciler(sender.hostname, queues)  # re-sends queued rows a restarted Redis lost


@worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    forget_inherited_clients()  # the parent's threads use them while it forks


@worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    stop_reconciler()
    stop_heartbeat()
