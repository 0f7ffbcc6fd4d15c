"""A prefork pool child must not use the Redis client it inherited (workers/after_fork.py).

The worker's main process keeps threads that talk to Redis (heartbeat, reconciler) while it forks
a child per training or evaluation task. If one of them held the client pool's lock at that
instant, the child's copy of the lock stays held forever, and redis-py 8 takes it in a forked
child to reset the pool: the task hung right after claiming its job (seen in
tests/workers/test_queue_refill.py before this fix: the job went "running", then "worker lost").
Here a thread holds the lock while the test forks, as it happened."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from app.redis_client import get_redis
from workers.after_fork import forget_inherited_clients

HANG_GUARD_S = 5  # the child's alarm: a child that hangs is killed by it; nothing is timed


def child_pings(forget: bool) -> int:
    """Fork while another thread holds the pool's lock; the child's exit status: 0 when it
    could talk to Redis, else the signal that ended it (SIGALRM: it hung)."""
    client = get_redis()
    client.ping()
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with client.connection_pool._lock:  # what a beat or a reconciler pass does, briefly
            held.set()
            release.wait()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:  # the child: only os._exit leaves it
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # not pytest-timeout's handler
            signal.alarm(HANG_GUARD_S)
            if forget:
                forget_inherited_clients()
            get_redis().ping()
            os._exit(0)
        except BaseException:
            os._exit(1)
    release.set()
    holder.join()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_forked_child_uses_a_redis_client_of_its_own(platform_env, database_url) -> None:  # type: ignore[no-untyped-def]
    assert child_pings(forget=True) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_inherited_client_hangs_the_child(platform_env, database_url) -> None:  # type: ignore[no-untyped-def]
    """The fault itself, so the test above keeps meaning something if redis-py changes."""
    assert child_pings(forget=False) == -signal.SIGALRM


def _pool_in_use() -> object:
    """The connection pool a worker's session_scope() draws from now."""
    from app.db import session_scope

    with session_scope() as session:
        return session.get_bind().pool


@pytest.mark.both_databases
def test_a_forked_child_opens_database_connections_of_its_own(platform_env) -> None:  # type: ignore[no-untyped-def]
    """What the task code uses (session_scope) must be what the child empties: a child that took
    its parent's pooled PostgreSQL connection shared one server session with it ("prepared
    statement _pg3_0 already exists", seen in CI). Checked in this process: after
    forget_inherited_clients, session_scope draws from a new, empty pool, not the one holding
    the connections a child would have inherited."""
    inherited = _pool_in_use()
    assert _pool_in_use() is inherited
    forget_inherited_clients()
    assert _pool_in_use() is not inherited
