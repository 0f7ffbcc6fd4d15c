"""`tunelab up`: run Redis (if needed), the web server and the workers as one unit.

It supervises them as a process manager does: a worker (or the embedded Redis) that dies is
started again after a delay that doubles while it keeps dying (1 s up to 30 s, back to 1 s once
it stayed up a minute), and the others keep running, so a training run that crashes its worker
does not end every user's chat. Only Ctrl-C / SIGTERM, or a dead web server, stops everything.
What runs, and how often it was restarted, goes to Redis for /healthz (`supervisor_state_key`).

Each child gets its own process group, so stopping sends SIGTERM to the whole group (Celery's
pool children included), waits, then SIGKILLs what is left. On Linux each child also asks the
kernel to SIGTERM it if the supervisor itself dies, so even `kill -9` of `tunelab up` leaves
no orphans behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from app.child_process import die_with_parent_at
from app.config import Settings
from app.embedded_redis import EmbeddedRedisError, free_port, start_embedded_redis
from app.gpus import train_worker_devices, visible_gpu_ids
from app.queue import ACCELERATOR_QUEUES
from app.redis_keys import supervisor_state_key

logger = logging.getLogger("tunelab.up")

STOP_GRACE_S = 15.0
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
# A child that ran this long before dying is not crash-looping: restart it after the shortest delay.
STABLE_AFTER_S = 60.0
# The state key is rewritten this often (and at every exit and restart), and expires after
# STATE_TTL_S, so a supervisor killed with SIGKILL vanishes from /healthz on its own.
STATE_EVERY_S = 2.0
STATE_TTL_S = 10


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
    """A Celery worker. The accelerator queues (`train`, `eval`) get a fresh process per task (GPU
    memory is returned) and one task at a time; the other queues share a thread pool so a chat
    never waits behind an export."""
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
    if set(queues) & set(ACCELERATOR_QUEUES):
        return [*base, "--pool", "prefork", "--concurrency", "1", "--max-tasks-per-child", "1"]
    return [*base, "--pool", "threads", "--concurrency", str(concurrency or THREAD_POOL_SIZE)]


def restart_delay(previous_s: float, uptime_s: float) -> float:
    """Seconds to wait before starting a dead child again: 1 s after its first exit, doubling
    while it keeps dying soon after each start, at most 30 s; a child that stayed up for
    STABLE_AFTER_S starts again after 1 s."""
    if previous_s <= 0 or uptime_s >= STABLE_AFTER_S:
        return RESTART_MIN_S
    return min(previous_s * 2, RESTART_MAX_S)


@dataclass
class Child:
    """One supervised process, how to start it again, and its restart history."""

    name: str
    launch: Callable[[], subprocess.Popen[bytes]]
    restart: bool = True  # False: its exit stops everything (the web server)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # monotonic
    delay_s: float = 0.0  # the last restart delay, doubled while it keeps crashing
    restart_due: float | None = None  # monotonic; set while it is down, waiting to restart
    restarts: int = 0
    last_exit_code: int | None = None
    last_restart_at: float | None = None  # wall clock, for /healthz

    def spawn(self) -> None:
        self.proc = self.launch()
        self.started_at = time.monotonic()
        self.restart_due = None

    @property
    def up(self) -> bool:
        return self.restart_due is None and self.proc is not None

    def state(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.proc.pid if self.up and self.proc else None,
            "alive": self.up,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "last_restart_at": self.last_restart_at,
            "restart_in_s": (
                None if self.restart_due is None else round(max(0.0, self.restart_due - now), 1)
            ),
        }


@dataclass
class Supervisor:
    settings: Settings
    host: str
    port: int
    run_web: bool = True
    children: dict[str, Child] = field(default_factory=dict)
    _stopping: bool = False
    _redis_url: str = ""
    _state_due: float = 0.0

    def start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        restart: bool = True,
        niceness: int = 0,
    ) -> None:
        logger.info("starting %s: %s", name, " ".join(args))
        preexec = die_with_parent_at(niceness)

        def launch() -> subprocess.Popen[bytes]:
            return subprocess.Popen(args, env=env, preexec_fn=preexec)

        child = Child(name, launch, restart=restart)
        child.spawn()
        self.children[name] = child

    def start_redis(self) -> str:
        """The embedded Redis; a restart reuses its port, which every child's URL names."""
        workdir, port = self.settings.paths.redis, free_port()
        child = Child("redis", lambda: start_embedded_redis(workdir, port)[0])
        child.spawn()
        self.children["redis"] = child
        return f"redis://127.0.0.1:{port}/0"

    def train_workers(self, env: dict[str, str]) -> list[tuple[str, list[str], dict[str, str]]]:
        """(name, command, environment) of each training worker: one per GPU, each seeing only
        its own device, so one job runs per GPU at a time."""
        devices = train_worker_devices(self.settings.worker_gpus)
        if devices == [None]:
            return [("worker-train", worker_command(ACCELERATOR_QUEUES, "train"), env)]
        workers = []
        for visible in devices:
            name = f"train-gpu{visible}" if visible else "train-cpu"
            worker_env = {**env, "CUDA_VISIBLE_DEVICES": visible or ""}
            workers.append((f"worker-{name}", worker_command(ACCELERATOR_QUEUES, name), worker_env))
        return workers

    def train_niceness(self, worker_env: dict[str, str]) -> int:
        """A training worker on the CPU runs at a lower priority (TUNELAB_CPU_TRAIN_NICENESS):
        it shares the cores with the web and the chat worker, and would otherwise take them from
        every page and answer for as long as a run lasts. One with a GPU keeps the usual
        priority: its CPU work is feeding the GPU."""
        return 0 if visible_gpu_ids(worker_env) else self.settings.cpu_train_niceness

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
        # The data dir is absolute already (app.config resolves it).
        env = dict(os.environ, TUNELAB_DATA_DIR=str(self.settings.data_dir))
        try:
            self._redis_url = self.settings.broker_url
            if not self.settings.redis_url:
                self._redis_url = env["TUNELAB_REDIS_URL"] = self.start_redis()
                logger.info("embedded Redis at %s", self._redis_url)
            from app import migrate

            migrate.upgrade(self.settings.sqlalchemy_url)
            for name, args, worker_env in self.train_workers(env):
                self.start(name, args, worker_env, niceness=self.train_niceness(worker_env))
            self.start("worker-main", worker_command(["infer", "data", "export"], "main"), env)
            if self.run_web:
                self.start("web", web_command(self.host, self.port), env, restart=False)
                logger.info("Tunelab is running at http://%s:%d", self.host, self.port)
            return self._watch()
        finally:
            self.stop_all()

    def _watch(self) -> int:
        while not self._stopping:
            now = time.monotonic()
            for child in list(self.children.values()):
                if child.restart_due is None:
                    code = child.proc.poll() if child.proc else None
                    if code is None:
                        continue
                    if not child.restart:
                        logger.error(
                            "%s exited with code %s; stopping everything", child.name, code
                        )
                        return 1
                    self._schedule_restart(child, code, now)
                elif now >= child.restart_due and not self._stopping:
                    try:
                        self._restart(child)
                    except EmbeddedRedisError as exc:
                        logger.error(
                            "could not restart %s (%s); stopping everything", child.name, exc
                        )
                        return 1
            self._publish_state()
            time.sleep(0.2)
        return 0

    def _schedule_restart(self, child: Child, code: int, now: float) -> None:
        assert child.proc is not None
        # A Celery worker killed with SIGKILL leaves its pool children behind, in its group.
        _signal_group(child.proc, signal.SIGKILL)
        child.delay_s = restart_delay(child.delay_s, now - child.started_at)
        child.restart_due = now + child.delay_s
        child.last_exit_code = code
        logger.error(
            "%s exited with code %s; restarting it in %.0f s (the rest keeps running)",
            child.name,
            code,
            child.delay_s,
        )
        self._state_due = 0.0

    def _restart(self, child: Child) -> None:
        child.restarts += 1
        child.last_restart_at = time.time()
        child.spawn()
        assert child.proc is not None
        logger.warning(
            "restarted %s (pid %d, restart %d)", child.name, child.proc.pid, child.restarts
        )
        self._state_due = 0.0

    def _state_client(self) -> redis.Redis:
        # Short timeouts: the watch loop must not stall while Redis itself is down.
        return redis.Redis.from_url(self._redis_url, socket_connect_timeout=0.5, socket_timeout=1)

    def _publish_state(self) -> None:
        now = time.monotonic()
        if not self._redis_url or now < self._state_due:
            return
        self._state_due = now + STATE_EVERY_S
        payload = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "seen": time.time(),
            "children": [child.state(now) for child in self.children.values()],
        }
        key = supervisor_state_key(socket.gethostname(), os.getpid())
        try:
            with self._state_client() as client:
                client.set(key, json.dumps(payload), ex=STATE_TTL_S)
        except redis.exceptions.RedisError:
            logger.debug("could not publish the supervisor state", exc_info=True)

    def _clear_state(self) -> None:
        if not self._redis_url:
            return
        try:
            with self._state_client() as client:
                client.delete(supervisor_state_key(socket.gethostname(), os.getpid()))
        except redis.exceptions.RedisError:
            logger.debug("could not remove the supervisor state", exc_info=True)

    def stop_all(self) -> None:
        self._clear_state()
        # Web and workers first, Redis last: workers report their final state through it.
        procs = {name: child.proc for name, child in self.children.items() if child.proc}
        redis_proc = procs.pop("redis", None)
        self._stop_group(list(procs.items()))
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
