"""Worker heartbeats: a Redis key per worker, refreshed by a thread, expiring when it dies.

The web reads these keys to say which queues are served (`/healthz`, the header warning).
A worker killed with SIGKILL cannot clean up, so the key's TTL (3 heartbeats) is what
makes it disappear.

A training worker also publishes its measured throughput (`throughput`: the probe of
workers/training/probe.py on its device and training dtype), which the new-run form's time
estimate uses (app/services/estimates.py). The probe runs in a child process: CUDA initialised
in a prefork parent cannot be used by the children it forks, and the worker's own process
stays as it was. It measures PROBE_REPEAT times, PROBE_EVERY_S apart, and the best of these
figures is published: a worker starts next to other starting processes (web, chat worker) that
would otherwise make it look slower than it is.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from app.config import get_settings
from app.gpus import training_slots
from app.queue import Queue
from app.redis_client import get_redis
from app.redis_keys import worker_heartbeat_key

logger = logging.getLogger(__name__)

PROBE_REPEAT, PROBE_EVERY_S = 3, 60.0


class Heartbeat:
    def __init__(self, hostname: str, queues: list[str], interval_s: float) -> None:
        self.hostname = hostname
        self.queues = queues
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tunelab-heartbeat", daemon=True)
        self._started = time.time()
        self.accelerator = _accelerator()
        # Processes one training run may use here (app.services.placement reads it).
        self.slots = (
            training_slots(get_settings().train_processes)[1] if Queue.TRAIN.value in queues else 0
        )
        self.throughput: dict[str, Any] | None = None
        self._probe: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self._beat()
        self._thread.start()
        if Queue.TRAIN.value in self.queues:
            threading.Thread(target=self._measure, name="tunelab-probe", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._probe is not None and self._probe.poll() is None:
            self._probe.terminate()
        try:
            get_redis().delete(worker_heartbeat_key(self.hostname))
        except Exception:  # shutting down: Redis may already be gone
            logger.debug("could not remove heartbeat key", exc_info=True)

    def _beat(self) -> None:
        payload = {
            "hostname": self.hostname,
            "queues": self.queues,
            "accelerator": self.accelerator,
            "slots": self.slots,
            "pid": os.getpid(),
            "started": self._started,
            "seen": time.time(),
        }
        if self.throughput is not None:
            payload["throughput"] = self.throughput
        ttl = max(1, int(self.interval_s * 3 + 0.999))
        get_redis().set(worker_heartbeat_key(self.hostname), json.dumps(payload), ex=ttl)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat()
            except Exception:  # Redis restarts must not kill the worker; keep trying
                logger.warning("heartbeat failed", exc_info=True)

    def _measure(self) -> None:
        """Read the probe's JSON lines; keep and publish the best figure."""
        command = [
            sys.executable,
            "-m",
            "workers.training.probe",
            *("--repeat", str(PROBE_REPEAT), "--every", str(PROBE_EVERY_S)),
            *("--parent", str(os.getpid())),
        ]
        try:
            # stderr is the worker's: a failing probe's traceback lands in the worker log.
            self._probe = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            assert self._probe.stdout is not None
            for line in self._probe.stdout:
                figure = json.loads(line)
                best = self.throughput
                if best is None or figure["gflops"] > best["gflops"]:
                    self.throughput = figure
                    logger.info("measured throughput: %s", figure)
                    if not self._stop.is_set():
                        self._beat()
            if self._probe.wait() != 0 and self.throughput is None:
                logger.warning("the throughput probe exited with code %s", self._probe.returncode)
        except Exception:  # estimates fall back to rough constants; training is unaffected
            logger.warning("throughput probe failed", exc_info=True)


def _accelerator() -> str:
    """What the web shows and offers (QLoRA needs CUDA): "cuda" or "cpu"."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


_heartbeat: Heartbeat | None = None


def start_heartbeat(hostname: str, queues: list[str]) -> None:
    global _heartbeat
    _heartbeat = Heartbeat(hostname, queues, get_settings().worker_heartbeat_s)
    _heartbeat.start()


def stop_heartbeat() -> None:
    if _heartbeat is not None:
        _heartbeat.stop()
