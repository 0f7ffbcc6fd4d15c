"""Running the real `tunelab up` in tests: the console script, a clean environment, waiting for
/healthz, and finding (and checking on) the processes it started, by pid, through /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

ALL_QUEUES = {"train", "infer", "data", "export"}


def descendants(pid: int) -> set[int]:
    """All processes below `pid` (children, grandchildren...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: set[int], timeout: float = 10) -> list[int]:
    """The pids still alive after up to `timeout` seconds (empty when all have exited)."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return sorted(pid for pid in pids if alive(pid))


def tunelab() -> list[str]:
    """The installed `tunelab` console script (what the README runs), else the module."""
    script = Path(sys.executable).parent / "tunelab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def without_tunelab_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")}


def clean_env(data_dir: Path) -> dict[str, str]:
    env = without_tunelab_settings()
    env["TUNELAB_DATA_DIR"] = str(data_dir)
    env["TUNELAB_WORKER_HEARTBEAT_S"] = "1"
    return env


def healthz(port: int) -> dict[str, Any]:
    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tunelab up exited with {proc.returncode}"
        try:
            body = healthz(port)
            if body["status"] == "ok" and ALL_QUEUES <= set(body["queues"]):
                return body
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("tunelab up did not become healthy")


def supervised(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The state /healthz reports for one child of the (only) `tunelab up` supervisor."""
    (supervisor,) = body["supervisors"]
    return next(child for child in supervisor["children"] if child["name"] == name)


def embedded_redis_url(redis_pid: int) -> str:
    """The URL of the embedded Redis `tunelab up` started, read from its command line (which
    redis-server rewrites to `redis-server 127.0.0.1:PORT` once it listens)."""
    import re

    cmdline = Path(f"/proc/{redis_pid}/cmdline").read_bytes().decode().replace("\0", " ")
    match = re.search(r"127\.0\.0\.1:(\d+)", cmdline) or re.search(r"--port (\d+)", cmdline)
    assert match, f"no port in the embedded Redis command line: {cmdline!r}"
    return f"redis://127.0.0.1:{match.group(1)}/0"


def ping_through_queue(redis_url: str, queue: str, timeout: float = 60) -> int:
    """Send the ping task to `queue` and return the pid of the process that ran it."""
    import uuid

    from app.config import Settings
    from app.queue import TaskName, make_celery
    from app.redis_keys import ping_reply_key

    token = uuid.uuid4().hex
    make_celery("test-client", Settings(redis_url=redis_url)).send_task(
        TaskName.PING.value, args=[token], queue=queue
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.get(ping_reply_key(token))
        if reply:
            return int(reply)
        time.sleep(0.2)
    raise AssertionError(f"no worker on queue {queue} answered a ping within {timeout} s")


def stop_up(proc: subprocess.Popen[bytes]) -> None:
    """Cleanup after a failed test: Ctrl-C first (the supervisor stops its children), SIGKILL
    only if that does not end it, so a failure does not leave workers running."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
