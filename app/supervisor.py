"""`tunelab up`: run Redis (if needed), the web server and the workers as one unit.

Each child gets its own process group, so stopping sends SIGTERM to the whole group (Celery's
pool children included), waits, then SIGKILLs what is left. On Linux each child also asks the
kernel to SIGTERM it if the supervisor itself dies, so even `kill -9` of `tunelab up` leaves
no orphans behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.config import Settings
from app.embedded_redis import start_embedded_redis
from app.gpus import train_worker_devices

logger = logging.getLogger("tunelab.up")

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 15.0


def _die_with_parent() -> None:
    """preexec_fn: new process group, and SIGTERM when the parent dies (Linux only)."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: process groups still give a clean stop on SIGINT/SIGTERM


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def web_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        "5",
    ]


# Pool threads of the infer/data/export worker. Each streaming chat holds one thread for its
# whole answer (it relays tokens from the shared engine), so the pool must exceed the engine's
# batch of 8 or chats beyond the pool size wait for others to finish: with 4 threads, 8
# concurrent chats ran 4 at a time. The rest leaves room for dataset and export tasks.
THREAD_POOL_SIZE = 12


def worker_command(queues: Sequence[str], name: str, concurrency: int | None = None) -> list[str]:
    """A Celery worker. `train` gets a fresh process per job (GPU memory is returned) and one job
    at a time; the other queues share a thread pool so a chat never waits behind an export."""
    base = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "-Q",
        ",".join(queues),
        "-n",
        f"{name}-{os.getpid()}@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if "train" in queues:
        return [*base, "--pool", "prefork", "--concurrency", "1", "--max-tasks-per-child", "1"]
    return [*base, "--pool", "threads", "--concurrency", str(concurrency or THREAD_POOL_SIZE)]


@dataclass
class Supervisor:
    settings: Settings
    host: str
    port: int
    run_web: bool = True
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stopping: bool = False

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        logger.info("starting %s: %s", name, " ".join(args))
        self.children[name] = subprocess.Popen(args, env=env, preexec_fn=_die_with_parent)

    def train_workers(self, env: dict[str, str]) -> list[tuple[str, list[str], dict[str, str]]]:
        """(name, command, environment) of each training worker: one per GPU, each seeing only
        its own device, so one job runs per GPU at a time."""
        devices = train_worker_devices(self.settings.worker_gpus)
        if devices == [None]:
            return [("worker-train", worker_command(["train"], "train"), env)]
        workers = []
        for visible in devices:
            name = f"train-gpu{visible}" if visible else "train-cpu"
            worker_env = {**env, "CUDA_VISIBLE_DEVICES": visible or ""}
            workers.append((f"worker-{name}", worker_command(["train"], name), worker_env))
        return workers

    def _request_stop(self, signum: int, _frame: object) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        if self.run_web and port_in_use(self.host, self.port):
            sys.stderr.write(
                f"tunelab: port {self.port} on {self.host} is already in use (another Tunelab, "
                f"or another program). Stop it, or choose another port with --port.\n"
            )
            return 2
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        env = dict(os.environ, TUNELAB_DATA_DIR=str(self.settings.data_dir.resolve()))
        try:
            if not self.settings.redis_url:
                proc, url = start_embedded_redis(self.settings.data_dir / "redis")
                self.children["redis"] = proc
                env["TUNELAB_REDIS_URL"] = url
                logger.info("embedded Redis at %s", url)
            from app import migrate

            migrate.upgrade(self.settings.sqlalchemy_url)
            for name, args, worker_env in self.train_workers(env):
                self.start(name, args, worker_env)
            self.start("worker-main", worker_command(["infer", "data", "export"], "main"), env)
            if self.run_web:
                self.start("web", web_command(self.host, self.port), env)
                logger.info("Tunelab is running at http://%s:%d", self.host, self.port)
            return self._watch()
        finally:
            self.stop_all()

    def _watch(self) -> int:
        while not self._stopping:
            for name, proc in self.children.items():
                if proc.poll() is not None:
                    logger.error(
                        "%s exited with code %s; stopping everything", name, proc.returncode
                    )
                    return 1
            time.sleep(0.2)
        return 0

    def stop_all(self) -> None:
        # Web and workers first, Redis last: workers report their final state through it.
        redis_proc = self.children.pop("redis", None)
        self._stop_group(list(self.children.items()))
        if redis_proc is not None:
            self._stop_group([("redis", redis_proc)])
        self.children.clear()

    @staticmethod
    def _stop_group(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        for _, proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for name, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in time; killing it", name)
            # The group may still hold pool children of a stopped Celery worker.
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
