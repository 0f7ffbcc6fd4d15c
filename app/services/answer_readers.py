"""Whether anyone still reads a chat answer: an answer nobody reads is cancelled, freeing the
worker, but not at once.

A page's stream (the SSE relay, app/web/sse.py) stops before the answer's end when its reader
left (a closed tab), and also when the web process restarts: a graceful shutdown cancels every
request after a few seconds, and the browser's EventSource comes back to the new process with
Last-Event-ID. Cancelling at once would stop every answer in flight on each restart, so
`abandon` only schedules the cancel, RESUME_GRACE_S later, and a reader that comes back first
(`attach`) calls it off. The timer is a daemon thread of the web process: a process that is
going away takes it along, so a restart cancels nothing.

The OpenAI-compatible stream cannot resume (its clients do not reconnect), so it cancels at once
(generation.cancel).
"""

from __future__ import annotations

import logging
import threading
import uuid

from app.redis_client import get_redis
from app.redis_keys import generation_abandoned_key
from app.services.generation import cancel

logger = logging.getLogger(__name__)

# Long enough for a browser to reconnect (retry 1 s) to a web process that restarts, short
# enough that a closed tab does not keep a worker busy for long.
RESUME_GRACE_S = 10.0


def attach(request_id: str) -> None:
    """A reader follows the answer (again): a pending cancel is called off."""
    get_redis().delete(generation_abandoned_key(request_id))


def abandon(request_id: str) -> threading.Timer:
    """The page's stream stopped before the answer's end: cancel the answer in RESUME_GRACE_S
    unless a reader attaches meanwhile. Returns the timer (tests join it)."""
    grace_s = RESUME_GRACE_S  # read now: tests shorten it
    token = uuid.uuid4().hex
    get_redis().set(generation_abandoned_key(request_id), token, ex=int(grace_s) + 60)
    timer = threading.Timer(grace_s, _cancel_if_still_abandoned, (request_id, token))
    timer.daemon = True
    timer.start()
    return timer


def _cancel_if_still_abandoned(request_id: str, token: str) -> None:
    try:
        if get_redis().get(generation_abandoned_key(request_id)) == token:
            cancel(request_id)
    except Exception:  # Redis away: the worker ends the answer on its own
        logger.warning("could not cancel abandoned answer %s", request_id, exc_info=True)
