"""The Celery app workers run: `celery -A workers.celery_app worker -Q train` (or `tunelab worker`).

Configuration comes from `app.queue.celery_config`, shared with the web's client, so both sides
agree on serializer, routes and acknowledgement policy.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready, worker_shutdown

from app.queue import make_celery
from workers.heartbeat import start_heartbeat, stop_heartbeat

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


@worker_ready.connect
def _on_ready(sender: Any = None, **_: Any) -> None:
    queues = sorted(sender.app.amqp.queues.consume_from.keys())
    start_heartbeat(sender.hostname, queues)


@worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    stop_heartbeat()
