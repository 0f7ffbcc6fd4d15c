"""`tunelab up` from nothing: embedded Redis, migrations, web and workers; a clean stop.

This runs the real command in a subprocess, with no TUNELAB_REDIS_URL and no database URL,
as a newcomer would after installing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.embedded_redis import free_port


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


def tunelab() -> list[str]:
    """The installed `tunelab` console script (what the README runs), else the module."""
    script = Path(sys.executable).parent / "tunelab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")}
    env["TUNELAB_DATA_DIR"] = str(data_dir)
    env["TUNELAB_WORKER_HEARTBEAT_S"] = "1"
    return env


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tunelab up exited with {proc.returncode}"
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            if body["status"] == "ok" and {"train", "infer", "data", "export"} <= set(
                body["queues"]
            ):
                return body
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("tunelab up did not become healthy")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_serves_then_stops_without_orphans(tmp_path: Path, stop_signal: int) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*tunelab(), "up", "--port", str(port)],
        env=clean_env(tmp_path / "data"),
    )
    try:
        health = wait_healthy(port, proc)
        assert len(health["workers"]["alive"]) == 2  # train, and infer/data/export
        page = httpx.get(f"http://127.0.0.1:{port}/projects", timeout=5)
        assert page.status_code == 200 and "Tunelab" in page.text
        created = httpx.post(f"http://127.0.0.1:{port}/api/projects", json={"name": "p"}, timeout=5)
        assert created.status_code == 201
        assert (tmp_path / "data" / "tunelab.db").exists()  # SQLite under the data dir

        children = descendants(proc.pid)
        assert len(children) >= 4  # redis, web, two workers (+ pool processes)
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if alive(pid)], "processes left behind"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_up_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*tunelab(), "up", "--port", str(port)],
            env=clean_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
