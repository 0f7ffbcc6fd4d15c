"""Liveness of the database, Redis and the workers (each worker keeps a heartbeat key), and
what each `tunelab up` supervisor runs: its children, their restarts and last exit codes."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.redis_client import get_redis
from app.redis_keys import supervisor_state_pattern, worker_heartbeat_pattern

logger = logging.getLogger(__name__)


@dataclass
class Health:
    database: bool = False
    redis: bool = False
    workers: list[dict[str, Any]] = field(default_factory=list)
    supervisors: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.database and self.redis and bool(self.workers)

    def queues_served(self) -> set[str]:
        return {q for w in self.workers for q in w.get("queues", [])}


def alive_workers() -> list[dict[str, Any]]:
    """Workers whose heartbeat key has not expired (a killed worker disappears within its TTL)."""
    return sorted(_read_json_keys(worker_heartbeat_pattern()), key=lambda w: w.get("hostname", ""))


def _read_json_keys(pattern: str) -> list[dict[str, Any]]:
    r = get_redis()
    found = []
    for key in r.scan_iter(match=pattern, count=100):
        raw = r.get(key)
        if raw:  # the key may expire between the scan and the read
            found.append(json.loads(raw))
    return found


def supervisors() -> list[dict[str, Any]]:
    """States published by `tunelab up` (app.supervisor); they expire when it stops."""
    return sorted(
        _read_json_keys(supervisor_state_pattern()),
        key=lambda s: (s.get("hostname", ""), s.get("pid", 0)),
    )


def _down_children(states: list[dict[str, Any]]) -> list[str]:
    return [
        f"{child['name']} on {state.get('hostname')} exited with code "
        f"{child.get('last_exit_code')}; restart {child.get('restarts', 0) + 1} in "
        f"{child.get('restart_in_s')} s"
        for state in states
        for child in state.get("children", [])
        if not child.get("alive")
    ]


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
        health.supervisors = supervisors()
        health.problems.extend(_down_children(health.supervisors))
    except Exception as exc:
        health.problems.append(f"redis: {exc.__class__.__name__}: {exc}")
    return health
