"""`tunelab up` from nothing: embedded Redis, migrations, web and workers; a clean stop.

This runs the real command in a subprocess, with no TUNELAB_REDIS_URL and no database URL,
as a newcomer would after installing.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from app.embedded_redis import free_port
from tests.helpers.up import (
    clean_env,
    descendants,
    stop_up,
    supervised,
    tunelab,
    wait_gone,
    wait_healthy,
    without_tunelab_settings,
)


def niceness(pid: int) -> int:
    """A process's `nice` value: field 19 of /proc/PID/stat (after the parenthesised name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


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
        # No GPU here: the training worker yields the cores to the web and the chat worker.
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        assert niceness(supervised(health, "worker-train")["pid"]) == 10
        assert niceness(supervised(health, "worker-main")["pid"]) == 0
        assert niceness(supervised(health, "web")["pid"]) == 0

        children = descendants(proc.pid)
        assert len(children) >= 4  # redis, web, two workers (+ pool processes)
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=60) == 0
        assert wait_gone(children) == [], "processes left behind"
    finally:
        stop_up(proc)


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


def test_up_takes_its_options_after_the_subcommand(tmp_path: Path) -> None:
    # The README's option list, written the way people type it: after `up`. No TUNELAB_
    # variable names the data dir; a relative --data-dir is taken from the working directory.
    port = free_port()
    env = without_tunelab_settings()
    env["TUNELAB_WORKER_HEARTBEAT_S"] = "1"
    proc = subprocess.Popen(
        [*tunelab(), "up", "--data-dir", "mine", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
    )
    try:
        wait_healthy(port, proc)
        created = httpx.post(f"http://127.0.0.1:{port}/api/projects", json={"name": "p"}, timeout=5)
        assert created.status_code == 201
        assert (tmp_path / "mine" / "tunelab.db").exists()
        assert (tmp_path / "mine" / "redis" / "redis.log").exists()
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert wait_gone(children) == [], "processes left behind"
    finally:
        stop_up(proc)
