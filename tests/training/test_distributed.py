"""One run in two processes through torchrun (DDP on the CPU, gloo): it trains like one process
at the same effective batch, stop and resume work for the group, and a failing rank fails the
run with its own reason (workers/training/launch.py, group.py, distributed.py).

Real torchrun, real processes, the tiny random Llama; nothing is mocked. Each launch costs a few
seconds (two fresh interpreters import torch and transformers).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.schemas.training import TrainingConfig
from tests.training.conftest import arithmetic_rows, write_jsonl
from workers.training import EmptyDataset, ListReporter, TrainingError, never_stop, train
from workers.training.checkpoint import checkpoint_dirs
from workers.training.launch import RUN_FOLDER, train_with_torchrun

# 31 rows, 20% held out: 25 training rows, so each epoch's plan ends with a batch of ONE example
# that only one of the two ranks can train (the other runs it with weight 0: group.shard).
# Accumulation 2 makes DDP skip the all-reduce on the first batch of each window (no_sync).
SETTINGS: dict[str, Any] = {
    "precision": "fp32",
    "val_percent": 20,
    "learning_rate": 1e-2,
    "epochs": 3,
    "dropout": 0.0,  # no random masks: the two runs must be the same computation
    "max_length": 64,
    "gradient_accumulation": 2,
    "eval_every_steps": 2,
    "checkpoint_every_steps": 3,
}
# Same examples in every optimizer step and the same token-weighted mean, so the two runs differ
# only in float32 summation order (two partial gradients all-reduced instead of one sum): the
# 6th-7th significant digit (measured: ~1e-7 relative). 1e-4 leaves room for other CPUs' kernels
# yet catches any real difference: a rank training the other's rows, a loss or gradient scaled by
# the number of ranks, or a dropped example all move the loss or grad norm by 1e-3 or more. The
# training benchmark (bench/bench_train.py) compares means within 3 standard errors because its
# two runs see batches in different orders; here the batches are the same, so step by step.
RTOL = 1e-4
# The real training worker (tests/conftest.py `worker`) gets two slots on this CPU, so it also
# consumes the queue of two-process runs (app.services.placement).
WORKER_ENV = {"TUNELAB_TRAIN_PROCESSES": "2"}


def config(**overrides: Any) -> TrainingConfig:
    return TrainingConfig(**{**SETTINGS, **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("rows") / "train.jsonl", arithmetic_rows(31))


@pytest.fixture(scope="module")
def one_process(tiny_model_dir: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The reference: one process at batch 4, accumulation 2 (effective batch 8)."""
    out = tmp_path_factory.mktemp("one")
    reporter = ListReporter()
    result = train(
        config(batch_size=4), str(tiny_model_dir), out / "data", data, out, reporter, never_stop
    )
    return result, reporter


def torchrun(
    tiny_model_dir: Path,
    data: Path,
    out: Path,
    *,
    stop: Callable[[ListReporter], str | None] | None = None,
    **overrides: Any,
) -> tuple[Any, ListReporter]:
    """Two processes at batch 2, accumulation 2: the same effective batch of 8."""
    reporter = ListReporter()
    kwargs = {"resume_from": overrides.pop("resume_from", None)}
    result = train_with_torchrun(
        config(batch_size=2, processes=2, **overrides),
        str(tiny_model_dir),
        out / "data",
        data,
        out,
        reporter,
        (lambda: stop(reporter)) if stop is not None else never_stop,
        **kwargs,
    )
    return result, reporter


def run_processes(out: Path) -> dict[int, int | None]:
    """The processes still running for the run in `out` (their command line names its spec
    file): pid -> rank, None for torchrun itself."""
    spec = str(out / RUN_FOLDER / "spec.json").encode()
    found: dict[int, int | None] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"workers.train_rank" in cmdline and spec in cmdline:
            ranks = [int(v[5:]) for v in environ if v.startswith(b"RANK=")]
            found[int(entry.name)] = None if b"torch.distributed.run" in cmdline else ranks[0]
    return found


def assert_same_curve(
    reference: list[dict[str, Any]], events: list[dict[str, Any]], first_step: int = 1
) -> None:
    for event in events:
        ref = reference[event["step"] - 1]
        assert event["step"] == ref["step"]
        for key in ("loss", "grad_norm", "eval_loss", "lr"):
            if ref[key] is None:
                assert event[key] is None, (key, event)
            else:
                assert event[key] == pytest.approx(ref[key], rel=RTOL), (key, event["step"])
    assert [e["step"] for e in events] == list(range(first_step, len(reference) + 1))


def test_two_processes_train_like_one_at_the_same_effective_batch(
    tiny_model_dir: Path, data: Path, tmp_path: Path, one_process: Any
) -> None:
    single, single_reporter = one_process
    result, reporter = torchrun(tiny_model_dir, data, tmp_path)

    assert (result.status, result.steps) == ("completed", single.steps)
    assert single.steps == 12  # 25 rows / 4 a batch = 7 batches, 4 windows of 2, 3 epochs
    assert reporter.total_steps == single.steps and reporter.info["processes"] == 2
    assert reporter.info["steps_per_epoch"] == single_reporter.info["steps_per_epoch"]
    # Rank 0 alone reports: one metrics event per step (not one per rank), one adapter saved.
    assert reporter.calls.count("metrics") == result.steps
    calls = [c for c in reporter.calls if c != "log"]  # the launcher logs before "start"
    assert calls[0] == "start" and calls[-1] == "end" and calls.count("start") == 1
    assert reporter.result == result
    assert sum(m.startswith("adapter saved") for m in reporter.messages) == 1
    assert_same_curve(single_reporter.events, reporter.events)
    assert result.eval_loss == pytest.approx(single.eval_loss, rel=RTOL)
    assert result.tokens_seen == single.tokens_seen  # every example, once per epoch

    # The adapter is the same weights too, in PEFT format, written once by rank 0.
    from safetensors.torch import load_file

    ours = load_file(str(result.adapter_path / "adapter_model.safetensors"))
    theirs = load_file(str(single.adapter_path / "adapter_model.safetensors"))
    assert ours.keys() == theirs.keys()
    for name, tensor in ours.items():
        assert tensor.allclose(theirs[name], rtol=1e-3, atol=1e-6), name
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-6", "step-9"]
    assert not (tmp_path / RUN_FOLDER).exists()  # the launcher's files go once it succeeded
    assert run_processes(tmp_path) == {}


def test_stop_ends_every_process_saves_once_and_the_group_resumes(
    tiny_model_dir: Path, data: Path, tmp_path: Path, one_process: Any
) -> None:
    _, single_reporter = one_process

    # Asked from the start: the launcher passes the request on at its first poll, long before
    # the ranks have loaded the model, so rank 0 reads it after step 1 and the group stops
    # there (a request that came later could race a run this short to its end).
    stopped, reporter = torchrun(tiny_model_dir, data, tmp_path, stop=lambda _: "stop")
    assert (stopped.status, stopped.steps) == ("stopped", 1)
    assert sum(m.startswith("adapter saved") for m in reporter.messages) == 1
    assert (stopped.adapter_path / "adapter_model.safetensors").is_file()
    assert run_processes(tmp_path) == {}  # both ranks ended, not only rank 0
    # "stop" checkpoints the step it stopped at, so the whole group can resume from it.
    checkpoint = checkpoint_dirs(tmp_path)[-1]
    assert checkpoint.name == f"step-{stopped.steps}"
    assert_same_curve(single_reporter.events[: stopped.steps], reporter.events)

    resumed, reporter = torchrun(tiny_model_dir, data, tmp_path, resume_from=checkpoint)
    assert (resumed.status, resumed.steps) == ("completed", 12)
    assert reporter.info["resumed_from_step"] == stopped.steps
    # The resumed group continues the very same curve as one uninterrupted process.
    assert_same_curve(single_reporter.events, reporter.events, first_step=stopped.steps + 1)


def test_a_typed_error_of_the_ranks_keeps_its_code_and_params(
    tiny_model_dir: Path, data: Path, tmp_path: Path
) -> None:
    # max_length 16: the prompt fills every row, so no rank has anything to train on.
    with pytest.raises(EmptyDataset) as raised:
        torchrun(tiny_model_dir, data, tmp_path, max_length=16)
    assert raised.value.code == "no_trainable_rows"
    assert raised.value.params["max_length"] == 16 and raised.value.params["rows"] == 25
    assert "no training examples" in str(raised.value)


def test_a_corrupt_checkpoint_fails_the_run_with_the_ranks_exception(
    tiny_model_dir: Path, data: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoints" / "step-3"
    (checkpoint / "adapter").mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": 3}))
    (checkpoint / "adapter" / "adapter_model.safetensors").write_bytes(b"\x00 not safetensors")

    with pytest.raises(TrainingError) as raised:
        torchrun(tiny_model_dir, data, tmp_path, resume_from=checkpoint)
    error = raised.value
    assert error.code == "rank_failed"
    assert error.params["rank"] in (0, 1) and error.params["processes"] == 2
    # The rank's own exception, as it raised it (safetensors cannot read the header).
    assert error.params["reason"].startswith("SafetensorError: "), error.params
    assert "header" in error.params["reason"]
    assert (tmp_path / RUN_FOLDER / "torchrun.log").is_file()  # kept for the post-mortem
    assert run_processes(tmp_path) == {}


def test_a_rank_killed_by_a_signal_fails_the_run_naming_that_rank(
    tiny_model_dir: Path, data: Path, tmp_path: Path
) -> None:
    # What the kernel's OOM killer does to one rank: SIGKILL, no exception, no error file.
    outcome: dict[str, Any] = {}
    reporter = ListReporter()

    def run() -> None:
        try:
            train_with_torchrun(
                config(batch_size=2, processes=2, epochs=100),
                str(tiny_model_dir),
                tmp_path / "data",
                data,
                tmp_path,
                reporter,
                never_stop,
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while len(reporter.events) < 2 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    found = run_processes(tmp_path)
    ranks = {rank: pid for pid, rank in found.items() if rank is not None}
    if set(ranks) != {0, 1}:
        for pid in found:  # leave no 400-step run behind
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"expected ranks 0 and 1 running: {found}, {outcome}")
    os.kill(ranks[1], signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()

    error = outcome["error"]
    assert isinstance(error, TrainingError) and error.code == "rank_failed", error
    assert error.params["rank"] == 1  # the killed rank, not rank 0 that lost its peer
    assert error.params["reason"].startswith("killed by signal 9 (SIGKILL)")
    assert run_processes(tmp_path) == {}  # rank 0 was stopped with it


# --------------------------------------------------------------------------- the worker's path


@pytest.fixture
def project(client: Any, worker: Any, tiny_model_dir: Path) -> dict[str, Any]:
    from app.services.health import alive_workers

    deadline = time.monotonic() + 60
    while not any(w.get("slots") == 2 for w in alive_workers()):
        assert time.monotonic() < deadline, f"no worker with 2 slots: {alive_workers()}"
        time.sleep(0.3)
    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "ddp", "base_model": model["id"]}).json()
    rows = [{"instruction": f"问题 {i}？", "output": f"回答 {i}。"} for i in range(24)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    return {"project": project["id"], "dataset": dataset["id"]}


def start_job(client: Any, project: dict[str, Any], **config: Any) -> dict[str, Any]:
    settings = {
        "max_length": 64, "epochs": 2, "batch_size": 2, "val_percent": 25, "rank": 4,
        "learning_rate": 5e-3, "eval_every_steps": 3, "checkpoint_every_steps": 3,
        "processes": 2, **config,
    }  # fmt: skip
    response = client.post(
        f"/api/projects/{project['project']}/jobs",
        json={"dataset_id": project["dataset"], "config": settings},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_job(client: Any, job_id: int, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if until(job):
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} stuck: {client.get(f'/api/jobs/{job_id}').json()}")


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def test_a_job_with_two_processes_runs_through_the_worker(
    client: Any, project: dict[str, Any]
) -> None:
    from app.config import get_settings

    job = wait_job(client, start_job(client, project)["id"], finished)
    assert job["status"] == "succeeded", job["error"]
    # 18 training rows in batches of 2 x 2 processes: 5 steps an epoch, 2 epochs.
    assert job["total_steps"] == 10
    metrics = client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]
    assert [m["step"] for m in metrics] == list(range(1, 11))  # once per step, from rank 0
    assert any(m["eval_loss"] is not None for m in metrics)
    streamed = []
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as response:
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "metric":
                streamed.append(json.loads(line[6:])["step"])
            elif kind == "done":
                break
    assert streamed == list(range(1, 11))
    versions = client.get(f"/api/projects/{project['project']}/versions").json()["data"]
    assert [v["version"] for v in versions] == [1] and versions[0]["config"]["processes"] == 2

    log = get_settings().paths.run_log(job["id"]).read_text(encoding="utf-8")
    assert "starting 2 training processes with torchrun" in log  # the task
    assert log.count("adapter saved") == 1  # rank 0, once
    assert '"processes": 2' in log  # rank 0's start line
    run_dir = get_settings().paths.run(job["id"])
    assert run_processes(run_dir) == {}


def test_cancelling_a_two_process_job_ends_both_processes(
    client: Any, project: dict[str, Any]
) -> None:
    from app.config import get_settings

    job = start_job(client, project, epochs=100)
    wait_job(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 2)
    run_dir = get_settings().paths.run(job["id"])
    assert sorted(r for r in run_processes(run_dir).values() if r is not None) == [0, 1]
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    job = wait_job(client, job["id"], finished)
    assert job["status"] == "cancelled"
    assert run_processes(run_dir) == {}
    assert not (run_dir / "adapter").exists()  # cancel keeps no adapter
