"""Placement (issue 16): a run asking for N processes goes only to a worker with N slots, the
new-run form names the workers that fit, and a run no worker fits is refused with the reason.

The real training worker here runs on the CPU with TUNELAB_TRAIN_PROCESSES=2 (two processes per
run through torchrun/gloo), so it consumes `train` and `train.cpu2` and says `slots: 2` in its
heartbeat. No GPU exists here; the GPU side is the same code with the GPU count as slots
(app.gpus.training_slots), covered by the unit tests below.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from app.errors import InvalidInput
from app.services.placement import place, require_placement, worker_queues

WORKER_ENV = {"TUNELAB_TRAIN_PROCESSES": "2"}
ROWS = [{"instruction": f"问题 {i}", "output": f"回答 {i}。"} for i in range(16)]


def heartbeat(name: str, device: str, slots: int) -> dict[str, Any]:
    queues = ["eval", "train", *worker_queues(device, slots)]
    return {"hostname": name, "accelerator": device, "slots": slots, "queues": queues}


def test_worker_queues_follow_slots() -> None:
    assert worker_queues("cpu", 1) == []
    assert worker_queues("cuda", 4) == ["train.cuda2", "train.cuda3", "train.cuda4"]


def test_a_run_goes_to_the_gpus_when_both_fit_and_is_refused_when_none_does() -> None:
    workers = [heartbeat("cpu-box", "cpu", 2), heartbeat("gpu-box", "cuda", 4)]
    assert place(1, workers).queue == "train"
    two = place(2, workers)
    assert two.queue == "train.cuda2" and two.labels == ["gpu-box (4 × GPU)"]
    assert place(4, workers).queue == "train.cuda4"
    assert place(2, [heartbeat("cpu-box", "cpu", 2)]).queue == "train.cpu2"
    with pytest.raises(InvalidInput) as refused:
        require_placement(8, workers)
    error = refused.value.errors[0]
    assert (error.field, error.key, error.params) == (
        "processes",
        "errors.no_worker_fits",
        {"n": 8, "largest": 4},
    )
    with pytest.raises(InvalidInput) as nobody:
        require_placement(2, [])
    assert nobody.value.errors[0].key == "errors.no_training_worker"
    # One process needs no particular worker: it waits in `train` for the first that starts.
    assert place(1, []).queue == "train"


def wait_for_trainer(slots: int, timeout: float = 60) -> dict[str, Any]:
    from app.services.health import alive_workers

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in alive_workers():
            if "train" in w.get("queues", []) and w.get("slots") == slots:
                return w
        time.sleep(0.3)
    raise AssertionError(f"no training worker with {slots} slots: {alive_workers()}")


@pytest.fixture
def project(client, tiny_model_dir) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "place", "base_model": model["id"]}).json()
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    return {"project": project, "dataset": dataset}


def test_runs_are_placed_by_the_workers_heartbeats(client, worker, project, db_session) -> None:  # type: ignore[no-untyped-def]
    trainer = wait_for_trainer(2)
    assert "train.cpu2" in trainer["queues"]  # the worker consumes what its slots allow
    assert "train.cpu3" not in trainer["queues"]
    project_id, dataset_id = project["project"]["id"], project["dataset"]["id"]
    config = {"max_length": 32, "epochs": 1, "batch_size": 2, "rank": 2, "val_percent": 0}

    # The form names the worker that fits, and says why when none does.
    form = {"dataset_id": str(dataset_id), **{k: str(v) for k, v in config.items()}}
    fits = client.post(f"/projects/{project_id}/jobs/estimate", data={**form, "processes": "2"})
    assert f"{trainer['hostname']} (2 × CPU)" in fits.text
    none = client.post(f"/projects/{project_id}/jobs/estimate", data={**form, "processes": "3"})
    assert 'id="placement"' in none.text and "the largest has 2" in none.text

    # The API refuses a run no worker can take, naming the field and what is missing...
    refused = client.post(
        f"/api/projects/{project_id}/jobs",
        json={"dataset_id": dataset_id, "config": {**config, "processes": 3}},
    )
    assert refused.status_code == 422, refused.text
    detail = refused.json()["error"]["details"][0]
    assert detail["field"] == "processes" and "the largest has 2" in detail["message"]
    assert client.get(f"/api/projects/{project_id}/jobs").json()["data"] == []  # nothing queued

    # ...and the HTML form shows the same message under the field.
    page = client.post(
        f"/projects/{project_id}/jobs",
        data={**form, "processes": "3"},
        headers={"HX-Request": "true"},
    )
    assert page.status_code == 422 and "the largest has 2" in page.text

    # A run that fits is queued where the worker takes it.
    created = client.post(
        f"/api/projects/{project_id}/jobs",
        json={"dataset_id": dataset_id, "config": {**config, "processes": 2}},
    )
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 120
    job = created.json()
    while job["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.3)
        job = client.get(f"/api/jobs/{job['id']}").json()
    assert job["status"] != "queued", "the 2-process run never reached the worker"
    from app.models import TrainingJob

    claimed = db_session.get(TrainingJob, job["id"])
    assert claimed is not None and claimed.worker == trainer["hostname"]
