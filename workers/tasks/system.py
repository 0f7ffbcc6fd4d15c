"""Housekeeping tasks."""

from __future__ import annotations

import os

from app.queue import TaskName
from app.redis_client import get_redis
from app.redis_keys import ping_reply_key
from workers.celery_app import celery_app


@celery_app.task(name=TaskName.PING)
def ping(token: str) -> int:
    """Round trip through the queue: writes our pid under the token (tests, diagnostics)."""
    get_redis().set(ping_reply_key(token), os.getpid(), ex=60)
    return os.getpid()
