"""Starting and stopping real services for tests: Redis and Celery worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from app.embedded_redis import free_port, start_embedded_redis

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379"


def redis_db_for(use: int) -> int:
    """The Redis database number for one use of this test process: 0 the session's own (and the
    SQLite tests' workers), 1 the PostgreSQL tests' workers, 2 `lonely_redis`. pytest-xdist runs
    the tests in several processes on one Redis: each takes three databases of its own (gw0:
    15, 14, 13; gw1: 12, 11, 10...), so no process's workers take another's tasks and no
    flushdb empties another's queues."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    db = 15 - 3 * index - use
    if db < 0:
        raise RuntimeError(f"too many test processes for one Redis (16 databases): {worker}")
    return db


def start_test_redis() -> tuple[str, Callable[[], None]]:
    """The machine's Redis (this process's first database, see redis_db_for) when it answers,
    else an embedded one we start and stop. TUNELAB_TEST_REDIS_URL names another server."""
    server = os.environ.get("TUNELAB_TEST_REDIS_URL", DEFAULT_TEST_REDIS)
    url = urlunsplit(urlsplit(server)._replace(path=f"/{redis_db_for(0)}"))
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


@dataclass
class RestartableRedis:
    """A redis-server of the test's own, which it may kill and start again on the same port:
    like production's Redis it keeps nothing on disk, so the new one starts empty. The port is
    TUNELAB_TEST_RESTART_REDIS_PORT when set (machines where test runs share ports), else a
    free one."""

    workdir: Path
    port: int = field(
        default_factory=lambda: (
            int(os.environ.get("TUNELAB_TEST_RESTART_REDIS_PORT") or 0) or free_port()
        )
    )
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        self.proc, _ = start_embedded_redis(self.workdir / f"run-{self.starts}", port=self.port)

    def kill(self) -> None:
        """SIGKILL: clients see their connections drop, as when Redis crashes."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def reset_app_caches() -> None:
    """Settings, engines and clients are cached per process; tests that change env reset them."""
    from app import queue
    from app.artifacts import get_store
    from app.config import get_settings
    from app.db import reset_engines
    from app.redis_client import get_redis

    get_settings.cache_clear()
    reset_engines()
    get_redis.cache_clear()
    get_store.cache_clear()
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
    """A Celery worker started exactly as `tunelab up` starts it (app.supervisor.worker_command:
    a worker serving `train` is prefork with one job per child process, the others share a
    thread pool), as a subprocess; `start()` returns once its heartbeat is in Redis."""

    env: dict[str, str]
    log_path: Path
    queues: str = "infer,data,export"
    concurrency: int | None = None  # thread-pool size; None: production's default
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        from app.supervisor import worker_command

        # A name of its own per worker: two workers of one pytest process must not share one.
        name = f"test-{time.time_ns()}"
        return [*worker_command(self.queues.split(","), name, self.concurrency), *self.extra_args]

    def launch(self) -> None:
        """Start the process without waiting for it (see wait_ready)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-4000:]}")
            if self.proc.pid in alive_worker_pids(self.env["TUNELAB_REDIS_URL"]):
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-4000:]}")

    def start(self, timeout: float = 60) -> None:
        self.launch()
        self.wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL, as a lost machine would: no cleanup runs (pool children included)."""
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


@dataclass
class Workers:
    """The workers `tunelab up` runs on a machine without GPUs: `train` (prefork, a fresh
    process per job) and the main one (infer, data, export in a thread pool)."""

    train: WorkerProcess
    main: WorkerProcess

    @classmethod
    def like_production(cls, env: dict[str, str], log_dir: Path) -> Workers:
        return cls(
            train=WorkerProcess(env=env, log_path=log_dir / "train.log", queues="train,eval"),
            main=WorkerProcess(env=env, log_path=log_dir / "main.log"),
        )

    @property
    def pids(self) -> set[int]:
        return {w.proc.pid for w in (self.train, self.main) if w.proc is not None}

    def start(self, timeout: float = 60) -> None:
        self.train.launch()  # both start at once: each takes seconds to import its stack
        self.main.launch()
        try:
            self.train.wait_ready(timeout)
            self.main.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.train.stop()
        self.main.stop()
