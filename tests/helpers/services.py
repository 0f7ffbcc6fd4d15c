"""Starting and stopping real services for tests: Redis and Celery worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from app.embedded_redis import start_embedded_redis

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"


def start_test_redis() -> tuple[str, Callable[[], None]]:
    """The machine's Redis (db 15) when it answers, else an embedded one we start and stop."""
    url = os.environ.get("TUNELAB_TEST_REDIS_URL", DEFAULT_TEST_REDIS)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return url, lambda: None
    except redis.exceptions.ConnectionError:
        pass
    import tempfile

    proc, url = start_embedded_redis(Path(tempfile.mkdtemp(prefix="tunelab-redis-")))

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return url, stop


def reset_app_caches() -> None:
    """Settings, engines and clients are cached per process; tests that change env reset them."""
    from app import queue
    from app.config import get_settings
    from app.db import get_engine
    from app.redis_client import get_redis

    get_settings.cache_clear()
    get_engine.cache_clear()
    get_redis.cache_clear()
    queue._client = None


def alive_worker_pids(redis_url: str) -> set[int]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pids = set()
    for key in client.scan_iter(match="tunelab:worker:*"):
        raw = client.get(key)
        if raw:
            pids.add(int(json.loads(raw)["pid"]))
    return pids


@dataclass
class WorkerProcess:
    """`celery worker` as a subprocess; `start()` returns once its heartbeat is in Redis."""

    env: dict[str, str]
    log_path: Path
    queues: str = "train,infer,data,export"
    pool: str = "threads"
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    def start(self, timeout: float = 60) -> None:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.celery_app",
            "worker",
            "-Q",
            self.queues,
            "-P",
            self.pool,
            "-c",
            "2",
            "-n",
            f"test-{os.getpid()}-{time.time_ns()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
            *self.extra_args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-4000:]}")
            if self.proc.pid in alive_worker_pids(self.env["TUNELAB_REDIS_URL"]):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL, as a lost machine would: no cleanup runs."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()
