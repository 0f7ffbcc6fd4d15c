"""torchrun's entry point: one rank of a training run with several processes.

workers/training/launch.py writes a RunSpec (JSON) and runs

    python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node N \\
        -m workers.train_rank SPEC.json

Every rank calls train() with the spec's arguments; train() joins the process group and splits
the work (workers/training/group.py). Rank 0 reports: for a job, straight to the job's Redis
stream, database and log (BusReporter) while reading the job's stop flag (RedisStopFlag);
without a job, as JSON lines to spec.events, reading stop requests from spec.stop_file (the
launcher relays both). Rank 0 writes the TrainResult to spec.result.

A rank that raises records the exception in its torchrun error file (TORCHELASTIC_ERROR_FILE,
through @record) together with the code and params of a typed error (TrainingError...), so the
launcher can fail the job with that rank's own reason.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ErrorHandler, record

from workers.training.launch import RunSpec, write_json
from workers.training.reporter import Reporter, ShouldStop

PR_SET_PDEATHSIG = 1
# Peer failures: the error a rank sees when another rank died in the middle of a collective.
# It is the consequence, not the reason, so the launcher prefers any other rank's error.
_PEER_MARKERS = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


class JsonLinesReporter:
    """Reporter writing one JSON object per call to a file the launcher reads as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def start(self, total_steps: int, info: dict[str, Any]) -> None:
        self._write({"event": "start", "total_steps": total_steps, "info": info})

    def metrics(self, event: dict[str, Any]) -> None:
        self._write({"event": "metrics", "data": event})

    def log(self, message: str) -> None:
        self._write({"event": "log", "message": message})

    def checkpoint(self, path: Path) -> None:
        self._write({"event": "checkpoint", "path": str(path)})

    def end(self, result: Any) -> None:
        pass  # the result goes to spec.result; the launcher calls its reporter's end with it


class FileStopFlag:
    """should_stop() reading the request the launcher writes into a file ("stop", "cancel")."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None


def rank_error_info(exc: BaseException) -> dict[str, Any]:
    """What the launcher needs to fail the job with this rank's reason."""
    code = getattr(exc, "code", None)
    params = getattr(exc, "params", None)
    text = str(exc)
    return {
        "rank": int(os.environ.get("RANK", "0")),
        "type": type(exc).__name__,
        "message": text,
        "code": code if isinstance(code, str) else None,
        "params": params if isinstance(params, dict) else {},
        "time": time.time(),  # finer than the error file's whole seconds: who failed first
        "peer": isinstance(exc, dist.DistError) or any(m in text for m in _PEER_MARKERS),
    }


class _RankErrorHandler(ErrorHandler):
    """torchelastic's error file, plus `extraInfo.tunelab` (rank_error_info)."""

    def record_exception(self, e: BaseException) -> None:
        super().record_exception(e)
        path = self._get_error_file_path()
        if not path or not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        data["message"]["extraInfo"]["tunelab"] = rank_error_info(e)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, default=str)


def _die_with_launcher() -> None:
    """SIGTERM when torchrun dies, even by SIGKILL: torchrun starts each rank in its own session,
    so nothing else would stop a rank whose launcher is gone (Linux only)."""
    launcher = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != launcher:  # it died before the signal was armed
        sys.exit(1)


def _reporting(spec: RunSpec) -> tuple[Reporter, ShouldStop]:
    if spec.job_id is None:
        return JsonLinesReporter(spec.events), FileStopFlag(spec.stop_file)
    # Imported here: only rank 0 of a job talks to Redis and the database.
    from app.config import get_settings
    from workers.reporting import BusReporter, RedisStopFlag

    log_path = get_settings().paths.run_log(spec.job_id)
    return BusReporter(spec.job_id, log_path), RedisStopFlag(spec.job_id)


def _main() -> None:
    _die_with_launcher()
    from workers.training.group import leave_group
    from workers.training.loop import train
    from workers.training.reporter import NullReporter, never_stop

    spec = RunSpec.read(Path(sys.argv[1]))
    main = int(os.environ.get("RANK", "0")) == 0
    reporter, should_stop = _reporting(spec) if main else (NullReporter(), never_stop)
    try:
        result = train(
            spec.training_config(),
            spec.base_model,
            Path(spec.data_dir),
            Path(spec.train_path),
            Path(spec.out_dir),
            reporter,
            should_stop,
            val_path=spec.path("val_path"),
            resume_from=spec.path("resume_from"),
            init_adapter=spec.path("init_adapter"),
            device=spec.device,
        )
    finally:
        flush = getattr(reporter, "flush", None)
        if callable(flush):  # metrics a BusReporter still holds, also when training failed
            flush()
    # Only after success: after a peer's failure a collective backend may block in teardown,
    # and the process ends anyway.
    leave_group()
    if main:
        write_json(spec.result, result.as_dict())


main = record(_main, _RankErrorHandler())

if __name__ == "__main__":
    main()
