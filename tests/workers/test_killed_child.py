"""A training or evaluation process killed by a signal (what the OOM killer does: SIGKILL to the
Celery pool child running the task) fails its row at once with what happened, not after the
45 s heartbeat timeout; the job resumes from its checkpoint on the same worker.

The worker is real (prefork, one task per child, as `tunelab up` starts it); the test plays
the OOM killer by sending SIGKILL to the pool child alone, so the worker's main process lives.
"""

from __future__ import annotations

import json

from tests.helpers.faults import kill_pool_child
from tests.helpers.versions import add_version
from tests.workers.test_job_failures import make_project
from tests.workers.test_training_jobs import FAST, finished, wait_job

# Well under the reaper's 45 s (job_lost_after_s): a failure within it came from the lost child.
SOON_S = 30


def test_sigkilled_training_child_fails_the_job_at_once_then_resumes(
    client, train_worker, tiny_model_dir
) -> None:  # type: ignore[no-untyped-def]
    project, dataset = make_project(client, tiny_model_dir)
    job = client.post(
        f"/api/projects/{project['id']}/jobs",
        json={"dataset_id": dataset["id"], "config": {**FAST, "epochs": 100}},
    ).json()
    wait_job(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 5)
    kill_pool_child(train_worker)

    job = wait_job(client, job["id"], finished, timeout=SOON_S)
    assert job["status"] == "failed"
    assert job["error_code"] == "killed"  # the reaper would have said worker_lost
    assert job["error_params"] == {
        "signal": 9,
        "signal_name": "SIGKILL",
        "batch_size": FAST["batch_size"],
        "max_length": FAST["max_length"],
    }
    assert "killed by signal 9 (SIGKILL) — usually out of memory" in job["error"]
    assert train_worker.proc is not None and train_worker.proc.poll() is None
    page = client.get(f"/jobs/{job['id']}", headers={"Accept-Language": "zh-CN"}).text
    assert "训练进程被信号 9（SIGKILL）终止——通常是内存不足" in page
    assert "减小批大小（当前为 4" in page

    # The worker took a fresh child: resuming continues from the last checkpoint.
    steps_before = [m["step"] for m in client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]]
    assert client.post(f"/api/jobs/{job['id']}/resume").json()["status"] == "queued"
    job = wait_job(
        client,
        job["id"],
        lambda j: j["status"] == "running" and j["step"] >= max(steps_before) + 3,
    )
    client.post(f"/api/jobs/{job['id']}/stop")
    job = wait_job(client, job["id"], finished)
    assert job["status"] == "succeeded" and job["error_code"] is None
    assert job["result"]["info"]["resumed_from_step"] > 0  # from a checkpoint, not from zero
    steps = [m["step"] for m in client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]]
    assert steps == list(range(1, steps[-1] + 1))  # one unbroken curve


def test_sigkilled_evaluation_child_fails_the_evaluation_at_once(
    client, train_worker, tiny_model_dir, db_session, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from tests.inference.helpers import build_adapter
    from tests.workers.test_evaluations import wait

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "ev", "base_model": model["id"]}).json()
    add_version(
        db_session, project["id"], 1, build_adapter(tiny_model_dir, tmp_path / "a", seed=1),
        model["id"],
    )  # fmt: skip
    # Long enough that it is still generating when the child is killed.
    rows = [{"instruction": f"问题 {i}", "output": f"回答 {i}"} for i in range(200)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("long.jsonl", content)}
    ).json()
    response = client.post(
        "/api/evaluations",
        json={
            "project_id": project["id"],
            "dataset_id": dataset["id"],
            "versions": ["base", "v1"],
            "max_new_tokens": 2048,
        },
    )
    evaluation_id = response.json()["id"]
    wait(client, evaluation_id, lambda e: (e["progress"] or {}).get("phase") == "generation")
    kill_pool_child(train_worker)

    evaluation = wait(client, evaluation_id, lambda e: e["status"] != "running", timeout=SOON_S)
    assert evaluation["status"] == "failed"
    assert evaluation["error_code"] == "eval_killed"  # the reaper's is eval_worker_lost
    assert "killed by signal 9 (SIGKILL) — usually out of memory" in evaluation["error"]


def test_death_is_read_from_billiards_words() -> None:
    from billiard.exceptions import WorkerLostError

    from workers.lost_child import death_of

    killed = death_of(WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL) Job: 0."))
    assert (killed.signal, killed.signal_name, killed.out_of_memory) == (9, "SIGKILL", True)
    segv = death_of(WorkerLostError("Worker exited prematurely: signal 11 (SIGSEGV) Job: 3."))
    assert (segv.status, segv.out_of_memory) == ("signal 11 (SIGSEGV)", False)
    exited = death_of(WorkerLostError("Worker exited prematurely: exitcode 1."))
    assert (exited.status, exited.signal) == ("exitcode 1", None)
