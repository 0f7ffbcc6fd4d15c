"""Login rate limits: after too many failed logins for one account, or from one address, in a
window, further attempts are refused until the window passes — even with the right password,
so guessing cannot continue in the background. Counters live in Redis (shared by every web
process) and expire on their own.

If Redis cannot be reached the limit is not applied (logged): logins keep working while the
queue is down, and argon2 still makes each guess slow.
"""

from __future__ import annotations

import logging

from app.redis_client import get_redis
from app.redis_keys import login_failures_key

logger = logging.getLogger(__name__)

WINDOW_S = 15 * 60
PER_ACCOUNT = 5
PER_ADDRESS = 20


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    return [
        (login_failures_key("user", username.strip().lower()[:64]), PER_ACCOUNT),
        (login_failures_key("addr", address[:64]), PER_ADDRESS),
    ]


def blocked(username: str, address: str) -> bool:
    """True when this account or this address has used up its failed attempts."""
    try:
        redis = get_redis()
        for key, limit in _keys(username, address):
            if int(redis.get(key) or 0) >= limit:
                return True
    except Exception as exc:
        logger.warning("login rate limit not checked (Redis: %s)", exc)
    return False


def record_failure(username: str, address: str) -> None:
    try:
        redis = get_redis()
        for key, _ in _keys(username, address):
            count = redis.incr(key)
            if count == 1:
                redis.expire(key, WINDOW_S)
    except Exception as exc:
        logger.warning("failed login not counted (Redis: %s)", exc)


def clear_account(username: str) -> None:
    """A successful login forgives the account's failures (not the address's)."""
    try:
        get_redis().delete(_keys(username, "")[0][0])
    except Exception as exc:
        logger.warning("login failures not cleared (Redis: %s)", exc)
