"""The same Celery message delivered twice (a worker that acks late and dies after finishing:
Redis hands the message out again) never trains, evaluates or exports twice: the first delivery
claims its row with a compare-and-set from `queued`, every other one finds nothing to claim and
ends cleanly.

Each message is pushed a second time byte for byte into the real queue before a real worker
starts, so the worker consumes both; the test then waits for Celery to report both deliveries
done before it counts versions, examples and files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.models import Evaluation, Export, TrainingJob
from tests.helpers.faults import accelerator_worker, duplicate_message, wait_log
from tests.helpers.services import WorkerProcess
from tests.helpers.versions import add_version
from tests.workers.test_job_failures import make_project
from tests.workers.test_training_jobs import FAST

# PostgreSQL only: two deliveries racing to claim one row is a database server's case (several
# workers, several machines); the claim's SQL is the same on SQLite.
pytestmark = pytest.mark.postgresql_only

EVAL_ROWS = [
    {"instruction": f"景点 {i} 在哪里？", "output": f"景点 {i} 在武陵源。"} for i in range(5)
]


def adapter_version(client, db_session, tiny_model_dir, tmp_path) -> dict:  # type: ignore[no-untyped-def]
    """A project on the tiny model whose v1 is a real PEFT adapter; the version's row id."""
    from app.models import ModelVersion
    from tests.inference.helpers import build_adapter

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "dup", "base_model": model["id"]}).json()
    adapter = build_adapter(tiny_model_dir, tmp_path / "adapter", seed=1)
    add_version(db_session, project["id"], 1, adapter, model["id"])
    row = db_session.query(ModelVersion).filter_by(project_id=project["id"]).one()
    return {"id": row.id, "project": project}


def _done_twice(worker: WorkerProcess, task: str, task_id: str, times: int = 2) -> None:
    wait_log(worker, f"Task {task}[{task_id}] succeeded", times)


def test_training_and_evaluation_delivered_twice_run_once(  # type: ignore[no-untyped-def]
    client, platform_env, db_session, tiny_model_dir, tmp_path
) -> None:
    from tests.inference.helpers import build_adapter

    project, dataset = make_project(client, tiny_model_dir)
    job = client.post(
        f"/api/projects/{project['id']}/jobs",
        json={"dataset_id": dataset["id"], "config": FAST},
    ).json()
    adapter = build_adapter(tiny_model_dir, tmp_path / "adapter", seed=1)
    add_version(db_session, project["id"], 1, adapter, project["base_model"])
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in EVAL_ROWS).encode()
    held_out = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("held.jsonl", content)}
    ).json()
    evaluation = client.post(
        "/api/evaluations",
        json={"project_id": project["id"], "dataset_id": held_out["id"], "versions": ["v1"],
              "max_new_tokens": 4},
    ).json()  # fmt: skip
    job_task = db_session.get(TrainingJob, job["id"]).task_id
    eval_task = db_session.get(Evaluation, evaluation["id"]).task_id
    url = platform_env["TUNELAB_REDIS_URL"]
    duplicate_message(url, "train", job_task)
    duplicate_message(url, "eval", eval_task)

    worker = accelerator_worker(platform_env, tmp_path / "train.log")
    worker.start()
    try:
        _done_twice(worker, "train.run", job_task)
        _done_twice(worker, "eval.run", eval_task)
    finally:
        worker.stop()
    log = worker.log_path.read_text()
    assert f"job {job['id']} is not queued (redelivered or cancelled); skipping" in log
    assert f"evaluation {evaluation['id']} is not queued; skipping" in log

    job = client.get(f"/api/jobs/{job['id']}").json()
    assert job["status"] == "succeeded" and job["result"]["version"] == 2
    versions = client.get(f"/api/projects/{project['id']}/versions").json()["data"]
    assert sorted(v["version"] for v in versions) == [1, 2]  # v1 added above; one run: v2
    steps = [m["step"] for m in client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]]
    assert steps == list(range(1, job["total_steps"] + 1))  # one curve, not two

    evaluation = client.get(f"/api/evaluations/{evaluation['id']}").json()
    assert evaluation["status"] == "succeeded"
    examples = client.get(f"/api/evaluations/{evaluation['id']}/examples").json()
    assert examples["count"] == len(EVAL_ROWS)  # one run's examples, not two


def test_export_delivered_twice_and_again_after_it_finished_writes_once(  # type: ignore[no-untyped-def]
    client, platform_env, db_session, tiny_model_dir, tmp_path
) -> None:
    version = adapter_version(client, db_session, tiny_model_dir, tmp_path)
    response = client.post(f"/api/versions/{version['id']}/exports", json={"format": "adapter"})
    assert response.status_code == 202
    row = db_session.query(Export).filter_by(version_id=version["id"], format="adapter").one()
    export_id, task_id = row.id, row.task_id
    url = platform_env["TUNELAB_REDIS_URL"]
    raw = duplicate_message(url, "export", task_id)

    # A thread-pool worker, as for exports in production: both copies run at the same time.
    env = dict(os.environ, **platform_env)
    worker = WorkerProcess(env=env, log_path=tmp_path / "main.log", queues="export")
    worker.start()
    try:
        _done_twice(worker, "export.run", task_id)
        rows = client.get(f"/api/versions/{version['id']}/exports").json()["data"]
        [first] = [r for r in rows if r["format"] == "adapter"]
        assert first["status"] == "succeeded", first
        folder = Path(platform_env["TUNELAB_DATA_DIR"]) / "exports" / str(version["id"])
        [file] = list(folder.iterdir())
        written = file.stat().st_mtime_ns

        # Delivered a third time, long after it finished.
        import redis

        redis.Redis.from_url(url).lpush("export", raw)
        _done_twice(worker, "export.run", task_id, times=3)
    finally:
        worker.stop()
    assert list(folder.iterdir()) == [file]  # one file, no temp left behind
    assert file.stat().st_mtime_ns == written  # not written again
    rows = client.get(f"/api/versions/{version['id']}/exports").json()["data"]
    [last] = [r for r in rows if r["format"] == "adapter"]
    assert (last["status"], last["sha256"], last["finished_at"]) == (
        "succeeded",
        first["sha256"],
        first["finished_at"],
    )
    # Two copies skipped at least (the reconciler of a starting worker may send a third).
    assert worker.log_path.read_text().count(f"export {export_id} is not queued") >= 2
