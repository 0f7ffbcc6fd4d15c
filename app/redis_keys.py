"""Every Redis key Tunelab uses is built here, so names never drift between web and workers."""

from __future__ import annotations

PREFIX = "tunelab"


def worker_heartbeat_key(hostname: str) -> str:
    return f"{PREFIX}:worker:{hostname}"


def worker_heartbeat_pattern() -> str:
    return f"{PREFIX}:worker:*"


def supervisor_state_key(hostname: str, pid: int) -> str:
    """What a `tunelab up` (or `tunelab worker`) supervisor runs: its children and restarts."""
    return f"{PREFIX}:supervisor:{hostname}:{pid}"


def supervisor_state_pattern() -> str:
    return f"{PREFIX}:supervisor:*"


def ping_reply_key(token: str) -> str:
    return f"{PREFIX}:ping:{token}"


def model_progress_key(model_id: str) -> str:
    return f"{PREFIX}:model-progress:{model_id}"


def worker_result_key(request_id: str) -> str:
    return f"{PREFIX}:result:{request_id}"


def job_stream_key(job_id: int) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def job_stop_key(job_id: int) -> str:
    return f"{PREFIX}:job:{job_id}:stop"


def generation_request_key(request_id: str) -> str:
    return f"{PREFIX}:gen:{request_id}:request"


def generation_stream_key(request_id: str) -> str:
    return f"{PREFIX}:gen:{request_id}:events"


def generation_cancel_key(request_id: str) -> str:
    return f"{PREFIX}:gen:{request_id}:cancel"


def generation_owner_key(request_id: str) -> str:
    """The worker process answering a request (its heartbeat's hostname, pid and start time):
    the relays end the answer with an error when that heartbeat goes."""
    return f"{PREFIX}:gen:{request_id}:owner"


def evaluation_stream_key(evaluation_id: int) -> str:
    return f"{PREFIX}:eval:{evaluation_id}:events"


def login_failures_key(kind: str, value: str) -> str:
    """Failed logins in the current window, per account (`kind` "user") or address ("addr")."""
    return f"{PREFIX}:login-failures:{kind}:{value}"


def worker_result_owner_key(request_id: str) -> str:
    """Who asked for a worker result: only that user may read it."""
    return f"{PREFIX}:result-owner:{request_id}"


def reconciled_key(queue: str) -> str:
    """Set once `queue`'s queued rows were sent again in this Redis's lifetime: a Redis that
    restarted empty lacks it (workers/reconciler.py)."""
    return f"{PREFIX}:reconciled:{queue}"


def reconciling_key(queue: str) -> str:
    """The lock of the worker refilling `queue` right now."""
    return f"{PREFIX}:reconciling:{queue}"


def resent_key(queue: str) -> str:
    """Ids of `queue`'s rows the refill in progress already sent (so each goes once)."""
    return f"{PREFIX}:resent:{queue}"


def generation_abandoned_key(request_id: str) -> str:
    """Set when an answer's page stream stopped before its end; cleared when a reader comes back
    (app/services/answer_readers.py)."""
    return f"{PREFIX}:gen:{request_id}:abandoned"
