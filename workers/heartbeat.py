"""Worker heartbeats: a Redis key per worker, refreshed by a thread, expiring when it dies.

The web reads these keys to say which queues are served (`/healthz`, the header warning).
A worker killed with SIGKILL cannot clean up, so the key's TTL (3 heartbeats) is what
makes it disappear.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from app.config import get_settings
from app.redis_client import get_redis
from app.redis_keys import worker_heartbeat_key

logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, hostname: str, queues: list[str], interval_s: float) -> None:
        self.hostname = hostname
        self.queues = queues
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tunelab-heartbeat", daemon=True)
        self._started = time.time()
        self.accelerator = _accelerator()

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            get_redis().delete(worker_heartbeat_key(self.hostname))
        except Exception:  # shutting down: Redis may already be gone
            logger.debug("could not remove heartbeat key", exc_info=True)

    def _beat(self) -> None:
        payload = {
            "hostname": self.hostname,
            "queues": self.queues,
            "accelerator": self.accelerator,
            "pid": os.getpid(),
            "started": self._started,
            "seen": time.time(),
        }
        ttl = max(1, int(self.interval_s * 3 + 0.999))
        get_redis().set(worker_heartbeat_key(self.hostname), json.dumps(payload), ex=ttl)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat()
            except Exception:  # Redis restarts must not kill the worker; keep trying
                logger.warning("heartbeat failed", exc_info=True)


def _accelerator() -> str:
    """What the web shows and offers (QLoRA needs CUDA): "cuda" or "cpu"."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


_heartbeat: Heartbeat | None = None


def start_heartbeat(hostname: str, queues: list[str]) -> None:
    global _heartbeat
    _heartbeat = Heartbeat(hostname, queues, get_settings().worker_heartbeat_s)
    _heartbeat.start()


def stop_heartbeat() -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
