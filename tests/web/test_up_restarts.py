"""`tunelab up` keeps serving when a worker dies: the real command, real processes, SIGKILL.

One crashed training run must not end every user's chat. The training worker's main process is
killed (the supervisor starts a new one), then its prefork pool child (Celery replaces it), then
the embedded Redis (the supervisor restarts it on the same port and the workers reconnect).
Throughout the worker kills /healthz keeps answering; each time a training worker is back within
60 s and takes a task from the train queue. Ctrl-C then stops everything, with no orphans.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.embedded_redis import free_port
from tests.helpers.up import (
    alive,
    clean_env,
    descendants,
    embedded_redis_url,
    healthz,
    ping_through_queue,
    stop_up,
    supervised,
    tunelab,
    wait_gone,
    wait_healthy,
)

BACK_WITHIN_S = 60


class HealthPoller:
    """Polls /healthz in a thread and records every answer (status code, or the error)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                url = f"http://127.0.0.1:{self.port}/healthz"
                self.answers.append(httpx.get(url, timeout=5).status_code)
            except httpx.HTTPError as exc:
                self.answers.append(repr(exc))

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def wait_for(what: str, check: Callable[[], Any], timeout: float = BACK_WITHIN_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, ValueError, StopIteration):
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {what}")


def healthy(port: int) -> dict[str, Any] | None:
    body = healthz(port)
    ok = body["status"] == "ok" and {"train", "infer", "data", "export"} <= set(body["queues"])
    return body if ok else None


def restarted_redis(port: int) -> dict[str, Any] | None:
    body = healthy(port)
    return body if body and supervised(body, "redis")["restarts"] == 1 else None


def train_worker(port: int, not_pid: int | None = None) -> dict[str, Any] | None:
    """The alive training worker on /healthz (its heartbeat), if it is not the old one."""
    body = healthz(port)
    for worker in body["workers"]["alive"]:
        if "train" in worker["queues"] and worker["pid"] != not_pid and alive(worker["pid"]):
            return worker
    return None


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pool_child(worker_pid: int, not_pid: int | None = None) -> int | None:
    """The worker's one prefork child (a fork: same command line; the worker may run other
    helper processes too), once there is exactly one that is not `not_pid`."""
    children = [
        pid
        for pid in descendants(worker_pid)
        if pid != not_pid and alive(pid) and cmdline(pid) == cmdline(worker_pid)
    ]
    return children[0] if len(children) == 1 else None


def test_a_killed_worker_is_restarted_and_the_rest_keeps_serving(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*tunelab(), "up", "--port", str(port)], env=clean_env(tmp_path))
    seen: set[int] = set()  # every process `tunelab up` ran, for the orphan check at the end
    try:
        body = wait_healthy(port, proc)
        redis_url = embedded_redis_url(supervised(body, "redis")["pid"])
        main_pid = supervised(body, "worker-train")["pid"]
        chat_worker = supervised(body, "worker-main")["pid"]
        assert train_worker(port)["pid"] == main_pid
        old_pool = wait_for("a pool child under the training worker", lambda: pool_child(main_pid))
        seen |= descendants(proc.pid)

        # 1. The training worker's main process dies (as the OOM killer would do it).
        with HealthPoller(port) as poller:
            subprocess.run(["kill", "-KILL", str(main_pid)], check=True)
            new = wait_for("a new training worker", lambda: train_worker(port, not_pid=main_pid))
        assert poller.answers and set(poller.answers) == {200}, poller.answers
        state = supervised(healthz(port), "worker-train")
        assert state["pid"] == new["pid"] and state["alive"] is True
        assert state["restarts"] == 1 and state["last_exit_code"] == -signal.SIGKILL
        assert state["last_restart_at"] is not None
        assert not alive(main_pid)
        assert wait_gone({old_pool}) == [], "the dead worker's pool child was left behind"
        assert supervised(healthz(port), "worker-main")["pid"] == chat_worker  # untouched
        child = wait_for("a pool child", lambda: pool_child(new["pid"]))
        assert ping_through_queue(redis_url, "train") == child  # it takes training tasks
        seen |= descendants(proc.pid)

        # 2. The pool child dies (a training run crashing its process): Celery replaces it.
        # (After the ping its child exited, one task per child, and was replaced once already.)
        child = wait_for("a pool child", lambda: pool_child(new["pid"], not_pid=child))
        with HealthPoller(port) as poller:
            subprocess.run(["kill", "-KILL", str(child)], check=True)
            child = wait_for("a new pool child", lambda: pool_child(new["pid"], not_pid=child))
        assert poller.answers and set(poller.answers) == {200}, poller.answers
        assert train_worker(port)["pid"] == new["pid"]
        assert supervised(healthz(port), "worker-train")["restarts"] == 1
        assert ping_through_queue(redis_url, "train") == child
        seen |= descendants(proc.pid)

        # 3. The embedded Redis dies: restarted on the same port; workers reconnect.
        redis_pid = supervised(healthz(port), "redis")["pid"]
        subprocess.run(["kill", "-KILL", str(redis_pid)], check=True)
        # Redis lost every key: the workers' heartbeats and the supervisor's state come back.
        body = wait_for("Redis restarted, both workers back", lambda: restarted_redis(port))
        assert supervised(body, "redis")["pid"] != redis_pid
        assert ping_through_queue(redis_url, "data") == chat_worker
        child = wait_for("a pool child", lambda: pool_child(new["pid"], not_pid=child))
        assert ping_through_queue(redis_url, "train") == child
        seen |= descendants(proc.pid)

        # 4. Ctrl-C stops everything, restarted processes included.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert wait_gone(seen) == [], "processes left behind"
    finally:
        stop_up(proc)
