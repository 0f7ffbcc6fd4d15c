"""train_with_torchrun(): one training run in N processes (one per GPU, or N CPU processes).

The run is torch's own launcher, not a home-made one:

    python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node N \\
        -m workers.train_rank <out_dir>/.torchrun/spec.json

Each rank runs train() (loop.py), which joins the process group and wraps the LoRA model in
DistributedDataParallel (group.py). Rank 0 reports and writes checkpoints, the adapter and the
result; the call here waits for torchrun and returns that result as a TrainResult.

Reporting: with a job id, rank 0 reports to the job itself (BusReporter, RedisStopFlag) and the
`reporter` given here only gets the launcher's own lines. Without one (tests, scripts), rank 0
writes JSON lines that this process relays to `reporter`, and `should_stop` is polled here and
passed on through a file, so the call behaves like train().

Failures: torchrun stops every rank when one fails. The failing rank's exception is in its
torchelastic error file (workers/train_rank.py records it with @record), a rank killed
by a signal is in torchrun's failure summary; `rank_failure` picks the rank that failed first
for a reason of its own (not because a peer vanished) and raises its error: the same code and
params for a typed error (out of memory, empty dataset...), else `rank_failed`.

The processes die with this one: torchrun gets SIGTERM when this process dies (even by SIGKILL)
and stops its ranks, and each rank gets SIGTERM when torchrun dies.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from app.error_codes import JobError, catalog_key
from app.schemas.training import TrainingConfig
from workers.ml.device import pick_device
from workers.training import errors
from workers.training.reporter import Reporter, ShouldStop
from workers.training.result import TrainResult

RUN_FOLDER = ".torchrun"  # under out_dir: spec, events, stop request, result, logs
POLL_S = 0.2
# torchrun gives its ranks 30 s to end after SIGTERM before it SIGKILLs them.
TERMINATE_GRACE_S = 45
PR_SET_PDEATHSIG = 1
# One failure in torchrun's summary (torch.distributed.elastic.multiprocessing.errors):
#   rank      : 1 (local_rank: 1)
#   exitcode  : -9 (pid: 4242) (SIGKILL)
_SUMMARY = re.compile(
    r"rank\s*:\s*(?P<rank>\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(?P<exitcode>-?\d+)"
)
# Set by torchrun for each rank; dropped from the launcher's own environment, in case this
# process runs under a launcher itself.
_RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class RunSpec:
    """train()'s arguments for the ranks, as JSON (paths as strings)."""

    config: dict[str, Any]
    base_model: str
    data_dir: str
    train_path: str
    out_dir: str
    folder: str  # out_dir/.torchrun
    val_path: str | None = None
    resume_from: str | None = None
    init_adapter: str | None = None
    device: str | None = None
    job_id: int | None = None

    @property
    def events(self) -> Path:
        return Path(self.folder) / "events.jsonl"

    @property
    def stop_file(self) -> Path:
        return Path(self.folder) / "stop"

    @property
    def result(self) -> Path:
        return Path(self.folder) / "result.json"

    def path(self, name: str) -> Path | None:
        value = getattr(self, name)
        return Path(value) if value is not None else None

    def training_config(self) -> TrainingConfig:
        return TrainingConfig.model_validate(self.config)

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def write_text_atomic(path: Path, text: str) -> None:
    """Written aside and renamed, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, default=str))


def torchrun_command(processes: int, spec_path: Path, log_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--nnodes", "1", "--nproc_per_node", str(processes),
        "--log-dir", str(log_dir),  # the ranks' error files: log_dir/<run>/attempt_0/<rank>/
        "-m", "workers.train_rank", str(spec_path),
    ]  # fmt: skip


def train_with_torchrun(
    config: TrainingConfig,
    base_model: str,
    data_dir: Path,
    train_path: Path,
    out_dir: Path,
    reporter: Reporter,
    should_stop: ShouldStop,
    *,
    val_path: Path | None = None,
    resume_from: Path | None = None,
    init_adapter: Path | None = None,
    device: str | torch.device | None = None,
    job_id: int | None = None,
) -> TrainResult:
    """train() in config.processes processes through torchrun; see the module's docstring."""
    n = config.processes
    folder = Path(out_dir) / RUN_FOLDER
    shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt's error files would mislead
    folder.mkdir(parents=True)
    target = pick_device(device)  # fail here, before any process starts, on a missing device
    spec = RunSpec(
        config=config.model_dump(mode="json"),
        base_model=base_model,
        data_dir=str(data_dir),
        train_path=str(train_path),
        out_dir=str(out_dir),
        folder=str(folder),
        val_path=_str(val_path),
        resume_from=_str(resume_from),
        init_adapter=_str(init_adapter),
        device=None if device is None else str(device),
        job_id=job_id,
    )
    spec_path = folder / "spec.json"
    write_json(spec_path, asdict(spec))
    reporter.log(f"starting {n} training processes with torchrun on {target.type}")
    relay = _Relay(spec.events, reporter) if job_id is None else None
    with (folder / "torchrun.log").open("wb") as log:
        process = subprocess.Popen(
            torchrun_command(n, spec_path, folder / "elastic"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(target, n),
            start_new_session=True,  # its own process group: stopped as one below
            preexec_fn=_death_signal(),  # only a prctl call prepared before the fork: see there
        )
    try:
        code = _wait(process, relay, should_stop, spec.stop_file)
    finally:
        if process.poll() is None:  # this process is being stopped (an exception, a signal)
            _terminate(process)
    if relay is not None:
        relay.pump()
    if code != 0:
        failure = rank_failure(folder, n, code)
        reporter.log(f"training process {failure.rank} failed: {failure.reason}")
        raise failure.error()
    result = result_from_dict(json.loads(spec.result.read_text(encoding="utf-8")))
    if relay is not None:
        reporter.end(result)
    shutil.rmtree(folder, ignore_errors=True)  # kept after a failure, for its logs
    return result


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _environment(target: torch.device, processes: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _RANK_ENV}
    # `-m workers.train_rank` must import from this code base wherever torchrun runs.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if target.type == "cpu" and "OMP_NUM_THREADS" not in env:
        # torchrun would give each rank 1 thread; the ranks share the cores instead.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    return env


def _death_signal() -> Callable[[], None] | None:
    """preexec_fn arming SIGTERM for torchrun when this process dies, even by SIGKILL (Linux).

    prctl is looked up here, before the fork: in the child, between fork and exec, only the call
    runs (no import, no dlopen), so threads of this process (the heartbeat) cannot leave a lock
    held that it would wait for."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return arm


def _wait(
    process: subprocess.Popen[bytes],
    relay: _Relay | None,
    should_stop: ShouldStop,
    stop_file: Path,
) -> int:
    """torchrun's exit code; meanwhile relays events and stop requests (without a job)."""
    asked: str | None = None
    while True:
        try:
            return process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        if relay is None:
            continue
        relay.pump()
        request = should_stop()
        if request is not None and request != asked:
            write_text_atomic(stop_file, request)
            asked = request


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to torchrun's process group (torchrun then stops its ranks), SIGKILL if it hangs.
    The ranks, in sessions of their own, get SIGTERM from the kernel when torchrun is gone."""
    for sig, grace in ((signal.SIGTERM, TERMINATE_GRACE_S), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class _Relay:
    """Passes rank 0's JSON-line events (distributed.JsonLinesReporter) to a Reporter."""

    def __init__(self, path: Path, reporter: Reporter) -> None:
        self.path = path
        self.reporter = reporter
        self.offset = 0

    def pump(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:  # no complete line yet
            return
        self.offset += end + 1
        for line in data[:end].splitlines():
            record = json.loads(line)
            if record["event"] == "start":
                self.reporter.start(record["total_steps"], record["info"])
            elif record["event"] == "metrics":
                self.reporter.metrics(record["data"])
            elif record["event"] == "log":
                self.reporter.log(record["message"])
            elif record["event"] == "checkpoint":
                self.reporter.checkpoint(Path(record["path"]))


def result_from_dict(data: dict[str, Any]) -> TrainResult:
    """TrainResult.as_dict() read back."""
    known = {f.name for f in fields(TrainResult)}
    values = {k: v for k, v in data.items() if k in known}
    for key in ("adapter_path", "checkpoint_path"):
        values[key] = Path(values[key]) if values.get(key) is not None else None
    return TrainResult(**values)


# --------------------------------------------------------------------------- failures


@dataclass(frozen=True)
class RankFailure:
    """The rank whose failure failed the run, and why."""

    rank: int | str  # "?" when torchrun said nothing usable (it could not start, say)
    processes: int
    reason: str  # "TrainingOOM: training ran out of memory...", "killed by signal 9 (SIGKILL)"
    info: dict[str, Any] | None = None  # distributed.rank_error_info of a recorded exception

    def error(self) -> Exception:
        """The error to fail the job with: the rank's own typed error again (same class when it
        is one of workers.training.errors, same code and params), else `rank_failed`."""
        info = self.info or {}
        code = info.get("code")
        if code and catalog_key(code) is not None:
            cls = getattr(errors, str(info.get("type")), None)
            if not (isinstance(cls, type) and issubclass(cls, errors.TrainingError)):
                cls = errors.TrainingError
            return cls(str(info.get("message")), code, **(info.get("params") or {}))
        return errors.TrainingError(
            f"training process {self.rank} of {self.processes} failed: {self.reason}",
            JobError.RANK_FAILED,
            rank=self.rank,
            processes=self.processes,
            reason=self.reason,
        )


def _recorded_errors(log_dir: Path) -> dict[int, dict[str, Any]]:
    """rank -> the error file a failed rank wrote (log_dir/<run>/attempt_<n>/<rank>/error.json).
    One node, so the local rank torchrun names the folder by is the rank."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(log_dir.glob("*/attempt_*/*/error.json")):
        try:
            message = json.loads(path.read_text(encoding="utf-8"))["message"]
        except (OSError, ValueError, KeyError):
            continue
        if isinstance(message, dict) and path.parent.name.isdigit():
            extra = message.get("extraInfo") or {}
            found[int(path.parent.name)] = {
                "text": str(message.get("message", "")),
                "info": extra.get("tunelab"),
                "time": float(extra.get("timestamp") or 0),
            }
    return found


def rank_failure(folder: Path, processes: int, exit_code: int) -> RankFailure:
    """Which rank failed the run and why, from the ranks' error files and torchrun's summary.

    Preference: a rank's own typed exception (earliest first), then a rank killed by a signal
    other than torchrun's SIGTERM (the OOM killer's SIGKILL, a segfault), then any other own
    exception, then a rank that died without one, then an error a rank got only because a peer
    vanished under a collective operation."""
    recorded = _recorded_errors(folder / "elastic")
    log = _read_tail(folder / "torchrun.log")
    exits = {int(m["rank"]): int(m["exitcode"]) for m in _SUMMARY.finditer(log)}

    def when(rank: int) -> float:
        info = recorded[rank]["info"] or {}
        return float(info.get("time") or recorded[rank]["time"])

    own = [r for r in recorded if not (recorded[r]["info"] or {}).get("peer")]
    typed = [r for r in own if (recorded[r]["info"] or {}).get("code")]
    if typed:  # a failure written for users (out of memory, a corrupt checkpoint...)
        rank = min(typed, key=when)
        entry = recorded[rank]
        return RankFailure(rank, processes, _clip(entry["text"]), entry["info"])
    # A rank killed by a signal (torchrun stops the others with SIGTERM) came first: the error a
    # peer then raised may not read as a lost peer (on a busy machine gloo may say anything).
    killed = sorted(
        r for r in exits if r not in recorded and exits[r] < 0 and exits[r] != -signal.SIGTERM
    )
    if killed:
        return RankFailure(killed[0], processes, _exit_reason(exits[killed[0]]))
    if own:
        rank = min(own, key=when)
        entry = recorded[rank]
        return RankFailure(rank, processes, _clip(entry["text"]), entry["info"])
    silent = sorted(r for r in exits if r not in recorded)
    if silent:
        rank = silent[0]
        return RankFailure(rank, processes, _exit_reason(exits[rank]))
    if recorded:
        rank = min(recorded, key=when)
        return RankFailure(rank, processes, _clip(recorded[rank]["text"]), recorded[rank]["info"])
    last = next((line for line in reversed(log.splitlines()) if line.strip()), "")
    return RankFailure("?", processes, _clip(f"torchrun {_exit_reason(exit_code)}: {last}"))


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        reason = f"killed by signal {-code} ({name})"
        return reason + (", usually out of memory" if -code == signal.SIGKILL else "")
    return f"ended with exit code {code}"


def _read_tail(path: Path, limit: int = 200_000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _clip(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
