"""Refilling the queues after Redis lost them: queued rows are sent again, once per Redis lifetime.

Redis keeps nothing on disk, so a restarted (or replaced) Redis has lost every message that
waited in it, while the database still holds the rows those messages were for, `queued`
(app/services/redelivery.py says which rows each queue has). Every worker runs one reconciler
thread next to its heartbeat, so this works under `tunelab up`, docker compose and a lone
`tunelab worker` alike. Every `interval_s`, for each queue the worker serves, it looks for
`reconciled_key(queue)`: set once that queue's rows were sent again in this Redis's lifetime. A
Redis that restarted empty has none, so the next pass sends every row still queued, and the
first worker to start on a fresh Redis does the same for rows queued while no worker ran.

One worker sends per queue and each row goes once: the pass holds `reconciling_key(queue)` (SET
NX, with a TTL so a worker that dies mid-way does not block the others) and records each row it
sent in `resent_key(queue)`, both only while it still holds that lock (a Lua script checks): a
Redis that restarted during the pass has lost the lock, and the next pass starts over rather
than trusting messages sent to the Redis that is gone. A multi-process run no alive worker fits
yet (their heartbeats come back a beat after Redis does) waits for a later pass; the marker is
set once every row went. Duplicates stay harmless anyway: every task claims its row with a
compare-and-set from `queued`, and a second message finds nothing to claim.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence

import redis

from app.config import get_settings
from app.db import session_scope
from app.queue import TaskName, enqueue
from app.redis_client import get_redis
from app.redis_keys import reconciled_key, reconciling_key, resent_key
from app.services.redelivery import WAITING, waiting

logger = logging.getLogger(__name__)

LOCK_TTL_S = 120  # far above a pass (one message per queued row); a dead holder's lock expires

# Each runs only while the pass still holds its lock (KEYS[1], value ARGV[1]); 0 when it lost it.
_RECORD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[3])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


Send = Callable[[TaskName, int, str], object]


def _send(task: TaskName, row_id: int, queue: str) -> None:
    enqueue(task, row_id, queue=queue)


class LostLock(Exception):
    """Redis restarted (or the lock expired) during the pass."""


def reconcile_queue(
    client: redis.Redis, queue: str, owner: str, send: Send = _send
) -> list[int] | None:
    """One pass for one queue: the ids sent again, or None when there was nothing to do (done in
    this Redis's lifetime already, or another worker is on it, or Redis restarted meanwhile)."""
    if client.exists(reconciled_key(queue)):
        return None
    lock, token = reconciling_key(queue), f"{owner}:{uuid.uuid4().hex}"
    if not client.set(lock, token, nx=True, ex=LOCK_TTL_S):
        return None
    sent: list[int] = []
    try:
        with session_scope() as session:
            rows = waiting(session, queue)
        done = {int(i) for i in client.smembers(resent_key(queue))}  # type: ignore[union-attr]
        for task, row_id, target in rows:
            if target is None or row_id in done:
                continue
            send(task, row_id, target)
            if not client.eval(_RECORD, 2, lock, resent_key(queue), token, str(row_id)):
                raise LostLock
            sent.append(row_id)
        unplaced = [row_id for _task, row_id, target in rows if target is None]
        if unplaced:
            logger.info("queue %s: no alive worker fits %s yet; next pass", queue, unplaced)
            client.eval(_RELEASE, 1, lock, token)
        elif not client.eval(_FINISH, 3, lock, reconciled_key(queue), resent_key(queue), token):
            raise LostLock
    except LostLock:
        logger.warning("Redis restarted while queue %s was refilled; starting over", queue)
        return None
    except BaseException:
        client.eval(_RELEASE, 1, lock, token)  # let the next pass (ours or another's) retry
        raise
    finally:
        if sent:
            logger.info("queue %s had lost its messages; sent %s again: %s", queue, len(sent), sent)
    return sent


class Reconciler:
    """The thread of one worker: a pass over the queues it serves every `interval_s` (its
    heartbeat's), the first at once."""

    def __init__(self, owner: str, queues: Sequence[str], interval_s: float) -> None:
        self.owner = owner
        # Only queues whose messages stand for database rows (not `infer`).
        self.queues = [q for q in queues if q in WAITING]
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tunelab-reconciler", daemon=True)
        self._failing = False

    def start(self) -> None:
        if self.queues:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self) -> dict[str, list[int]]:
        """A pass over every queue; what was sent again, per queue."""
        sent: dict[str, list[int]] = {}
        for queue in self.queues:
            ids = reconcile_queue(get_redis(), queue, self.owner)
            if ids is not None:
                sent[queue] = ids
        return sent

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
                self._failing = False
            except Exception:  # Redis or the database away: the next pass tries again
                # Once per outage at warning level: the heartbeat already logs every failure.
                logger.log(
                    logging.DEBUG if self._failing else logging.WARNING,
                    "could not refill the queues",
                    exc_info=True,
                )
                self._failing = True
            if self._stop.wait(self.interval_s):
                return


_reconciler: Reconciler | None = None


def start_reconciler(hostname: str, queues: list[str]) -> None:
    global _reconciler
    _reconciler = Reconciler(hostname, queues, get_settings().worker_heartbeat_s)
    _reconciler.start()


def stop_reconciler() -> None:
    if _reconciler is not None:
        _reconciler.stop()
