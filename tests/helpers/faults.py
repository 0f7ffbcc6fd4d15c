"""Injecting faults into real workers: kill a pool child, deliver a message twice, fill a disk."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.helpers.services import WorkerProcess


def accelerator_worker(platform_env: dict[str, str], log_path: Path) -> WorkerProcess:
    """A `train,eval` worker as `tunelab up` starts it (prefork, one task per child), with
    1 s job heartbeats; not started yet."""
    env = dict(os.environ, **platform_env, TUNELAB_JOB_HEARTBEAT_S="1")
    return WorkerProcess(env=env, log_path=log_path, queues="train,eval")


def pool_children(worker_pid: int) -> list[int]:
    """A prefork worker's pool children: forked, so their command line is the worker's (the
    throughput probe a training worker also starts is another program)."""
    own = Path(f"/proc/{worker_pid}/cmdline").read_bytes()
    children: list[int] = []
    for task in Path(f"/proc/{worker_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == own:
                    children.append(int(pid))
            except FileNotFoundError:  # exited meanwhile
                pass
    return children


def kill_pool_child(worker: WorkerProcess) -> int:
    """SIGKILL the one child running the worker's task, as the kernel's OOM killer would."""
    assert worker.proc is not None
    [child] = pool_children(worker.proc.pid)  # concurrency 1: one child
    os.kill(child, signal.SIGKILL)
    return child


def duplicate_message(redis_url: str, queue: str, task_id: str) -> bytes:
    """Push a queued task's message once more, byte for byte: what Redis hands out again when
    a worker that acks late dies after finishing (kombu restores the same payload)."""
    client = redis.Redis.from_url(redis_url)
    for raw in client.lrange(queue, 0, -1):
        if json.loads(raw)["headers"]["id"] == task_id:
            client.lpush(queue, raw)
            return bytes(raw)
    raise AssertionError(f"no message of task {task_id} waits in {queue!r}")


def wait_log(worker: WorkerProcess, text: str, count: int, timeout: float = 180) -> None:
    """Until the worker's log holds `text` `count` times (e.g. a task id's "succeeded")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.log_path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.2)
    log = worker.log_path.read_text(errors="replace")
    raise AssertionError(f"{text!r} not {count} times in the worker log:\n{log[-4000:]}")


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "600k") mounted on `path`: writes past it fail with ENOSPC, as on
    a full disk, in every process (workers included) and in every library (torch.save,
    safetensors, zipfile), with their own error types. Needs the right to mount (root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False, capture_output=True)


@functools.cache
def can_mount() -> bool:
    """Whether small_filesystem can work here (root, and a kernel that lets it mount)."""
    if os.geteuid() != 0:
        return False
    probe = Path(tempfile.mkdtemp(prefix="tunelab-mount-probe-"))
    try:
        with small_filesystem(probe, "64k"):
            return True
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False
    finally:
        probe.rmdir()
