"""A prefork pool child opens its own database and Redis connections.

The worker's main process runs threads that use both (the heartbeat, the reconciler) while it
forks a child per task (training, evaluation). A child inherits the connection pools as they were
at that instant: a lock one of those threads held then stays held in the child forever (redis-py
8's pool takes its own lock again in a forked child to reset itself, and would hang there), and a
connection used by two processes corrupts (SQLite's locks are per process; a PostgreSQL socket
carries one conversation). So a child puts what it inherited aside, neither using nor closing it
(closing would end the parent's connections, and even collecting it may take those locks), and
builds fresh clients on first use.
"""

from __future__ import annotations

from typing import Any

from app.db import forget_inherited_engines
from app.redis_client import get_redis

# Kept referenced, never collected in the child.
_inherited: list[Any] = []


def forget_inherited_clients() -> None:
    """Called first thing in a pool child (Celery's worker_process_init)."""
    forget_inherited_engines()  # the engines stay; their pools start empty
    if get_redis.cache_info().currsize:
        _inherited.append(get_redis())
    get_redis.cache_clear()
