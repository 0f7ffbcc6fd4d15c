"""Progress of preparing a base model (GGUF conversion, hub download), kept in Redis.

Workers write it through `workers.publish`-style calls to `set_progress`; the web reads it for
the progress bar. It is short-lived state: the durable outcome is the model's status.
"""

from __future__ import annotations

import json
from typing import Any

from app.redis_client import get_redis
from app.redis_keys import model_progress_key

TTL_S = 3600


def set_progress(
    model_id: str,
    state: str,
    fraction: float,
    message: str,
    code: str = "",
    params: dict[str, Any] | None = None,
) -> None:
    """A failure also stores its error code and params (app.error_codes) for the page."""
    key = model_progress_key(model_id)
    mapping: dict[str, Any] = {
        "state": state,
        "fraction": f"{fraction:.4f}",
        "message": message,
        "code": code,
        "params": json.dumps(params or {}),
    }
    pipe = get_redis().pipeline()
    pipe.hset(key, mapping=mapping)
    pipe.expire(key, TTL_S)
    pipe.execute()


def get_progress(model_id: str) -> dict[str, Any]:
    raw = get_redis().hgetall(model_progress_key(model_id))
    if not raw:
        return {"id": model_id, "state": "idle", "fraction": 0.0, "message": "", "code": None}
    return {
        "id": model_id,
        "state": raw.get("state", "idle"),
        "fraction": float(raw.get("fraction", 0)),
        "message": raw.get("message", ""),
        "code": raw.get("code") or None,
        "params": json.loads(raw.get("params") or "{}"),
    }
