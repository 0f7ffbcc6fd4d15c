"""Liveness of the database, Redis and the workers (each worker keeps a heartbeat key)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.redis_client import get_redis
from app.redis_keys import worker_heartbeat_pattern

logger = logging.getLogger(__name__)


@dataclass
class Health:
    database: bool = False
    redis: bool = False
    workers: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.database and self.redis and bool(self.workers)

    def queues_served(self) -> set[str]:
        return {q for w in self.workers for q in w.get("queues", [])}


def alive_workers() -> list[dict[str, Any]]:
    """Workers whose heartbeat key has not expired (a killed worker disappears within its TTL)."""
    r = get_redis()
    workers = []
    for key in r.scan_iter(match=worker_heartbeat_pattern(), count=100):
        raw = r.get(key)
        if raw:
            workers.append(json.loads(raw))
    return sorted(workers, key=lambda w: w.get("hostname", ""))


def check_health(session: Session) -> Health:
    health = Health()
    try:
        session.execute(text("SELECT 1"))
        health.database = True
    except Exception as exc:  # any driver error means "down"; the reason goes to the report
        health.problems.append(f"database: {exc.__class__.__name__}: {exc}")
    try:
        get_redis().ping()
        health.redis = True
        health.workers = alive_workers()
    except Exception as exc:
        health.problems.append(f"redis: {exc.__class__.__name__}: {exc}")
    return health
