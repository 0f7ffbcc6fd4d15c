"""A lost worker and a lost Redis never lose a run: the job fails with a reason within 60 s
and resumes from its checkpoint; the curve survives a Redis restart through the database."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.embedded_redis import start_embedded_redis
from tests.helpers.projects import project_with_rows
from tests.helpers.services import WorkerProcess, reset_app_caches
from tests.workers.test_training_jobs import FAST, ROWS, finished, wait_job


@pytest.fixture
def fast_reaper_client(platform_env, monkeypatch) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A client whose app fails jobs 8 s after their last heartbeat (45 s in production)."""
    monkeypatch.setenv("TUNELAB_JOB_LOST_AFTER_S", "8")
    reset_app_caches()
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client
    monkeypatch.undo()
    reset_app_caches()


def make_project(client, tiny_model_dir) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    return project_with_rows(client, ROWS, "f", tiny_model_dir)


def train_worker(tmp_path: Path, name: str) -> WorkerProcess:
    env = dict(os.environ, TUNELAB_JOB_HEARTBEAT_S="1")
    worker = WorkerProcess(env=env, log_path=tmp_path / f"{name}.log", queues="train")
    worker.start()
    return worker


def test_killed_worker_fails_the_job_then_resume(
    fast_reaper_client, tmp_path, tiny_model_dir
) -> None:  # type: ignore[no-untyped-def]
    client = fast_reaper_client
    project, dataset = make_project(client, tiny_model_dir)
    worker = train_worker(tmp_path, "w1")
    try:
        job = client.post(
            f"/api/projects/{project['id']}/jobs",
            json={"dataset_id": dataset["id"], "config": {**FAST, "epochs": 100}},
        ).json()
        wait_job(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 5)
        worker.kill()  # SIGKILL the whole worker: no cleanup, no final status
        killed_at = time.monotonic()
        job = wait_job(client, job["id"], finished, timeout=60)
        assert time.monotonic() - killed_at < 60
        assert job["status"] == "failed" and job["error_code"] == "worker_lost"
        assert "stopped responding" in job["error"]
    finally:
        worker.stop()

    steps_before = [m["step"] for m in client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]]
    worker = train_worker(tmp_path, "w2")
    try:
        assert client.post(f"/api/jobs/{job['id']}/resume").json()["status"] == "queued"
        job = wait_job(
            client,
            job["id"],
            lambda j: j["status"] == "running" and j["step"] >= max(steps_before) + 3,
        )
        log = client.get(f"/jobs/{job['id']}").text
        assert '"resumed_from_step": 0' not in log  # it resumed from a checkpoint, not from zero
        client.post(f"/api/jobs/{job['id']}/stop")
        job = wait_job(client, job["id"], finished)
        assert job["status"] == "succeeded"
        steps = [m["step"] for m in client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]]
        assert steps == list(range(1, steps[-1] + 1))  # one unbroken curve
    finally:
        worker.stop()


@pytest.fixture
def own_redis(platform_env, monkeypatch, tmp_path) -> Iterator[tuple[str, object]]:  # type: ignore[no-untyped-def]
    """An embedded Redis this test may restart, like a Redis without persistence would."""
    proc, url = start_embedded_redis(tmp_path / "redis")
    monkeypatch.setenv("TUNELAB_REDIS_URL", url)
    reset_app_caches()
    state = {"proc": proc}
    yield url, state
    state["proc"].terminate()
    state["proc"].wait(10)
    monkeypatch.undo()
    reset_app_caches()


def test_curve_survives_a_redis_restart(client, own_redis, tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    url, state = own_redis
    project, dataset = make_project(client, tiny_model_dir)
    worker = train_worker(tmp_path, "w")
    try:
        job = client.post(
            f"/api/projects/{project['id']}/jobs",
            json={"dataset_id": dataset["id"], "config": {**FAST, "epochs": 100}},
        ).json()
        wait_job(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 12)
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        state["proc"].kill()
        state["proc"].wait(10)
        state["proc"], _ = start_embedded_redis(tmp_path / "redis2", port=port)  # empty again
        time.sleep(3)  # the worker's next flushes land in the database
        points = client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]
        assert len(points) >= 10 and points[0]["step"] == 1
        page = client.get(f"/jobs/{job['id']}").text
        embedded = json.loads(page.split("data-points='")[1].split("'")[0])
        assert [p["step"] for p in embedded][:10] == list(range(1, 11))
        client.post(f"/api/jobs/{job['id']}/cancel")
        job = wait_job(client, job["id"], finished)
        assert job["status"] == "cancelled"
    finally:
        worker.stop()
