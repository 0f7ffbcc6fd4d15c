"""Short-lived results of worker requests the web waits for (template previews...), in Redis.

The web creates a request id and enqueues a task with it; the worker stores the result under
that id; the page polls until it is there. Results expire after ten minutes: they are views,
not records.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from app.redis_client import get_redis
from app.redis_keys import worker_result_key, worker_result_owner_key

TTL_S = 600


def new_request_id() -> str:
    return uuid.uuid4().hex


def mark_pending(request_id: str, owner_id: int) -> None:
    redis = get_redis()
    redis.set(worker_result_owner_key(request_id), str(owner_id), ex=TTL_S)
    redis.set(worker_result_key(request_id), json.dumps({"status": "pending"}), ex=TTL_S)


def set_result(request_id: str, payload: dict[str, Any]) -> None:
    get_redis().set(worker_result_key(request_id), json.dumps(payload), ex=TTL_S)


def get_result(request_id: str, owner_id: int) -> dict[str, Any] | None:
    """The result if `owner_id` asked for it; another user's id reads as unknown."""
    if not request_id.isalnum():
        return None
    redis = get_redis()
    owner = redis.get(worker_result_owner_key(request_id))
    if owner is None or int(owner) != owner_id:
        return None
    raw = redis.get(worker_result_key(request_id))
    return json.loads(raw) if raw else None
