"""Going round again on a real worker: an early-stopped run becomes v1, a run that continues
from v1 becomes v2 with its lineage, and a run whose starting version is gone fails clearly."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from tests.helpers.versions import adapter_dir
from tests.workers.test_training_jobs import FAST, ROWS, finished, wait_job


@pytest.fixture
def project(client, tiny_model_dir) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "again", "base_model": model["id"]}).json()
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    return {**project, "dataset_id": dataset["id"]}


def run(client, project: dict[str, Any], config: dict[str, Any], **body: Any) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/api/projects/{project['id']}/jobs",
        json={"dataset_id": project["dataset_id"], "config": {**FAST, **config}, **body},
    )
    assert response.status_code == 201, response.text
    return wait_job(client, response.json()["id"], finished)


def versions(client, project: dict[str, Any]) -> dict[int, dict]:  # type: ignore[no-untyped-def]
    data = client.get(f"/api/projects/{project['id']}/versions").json()["data"]
    return {v["version"]: v for v in data}


def test_early_stop_then_continue_from_the_version(client, worker, project) -> None:  # type: ignore[no-untyped-def]
    # No evaluation can beat the first by 10 nats: the second evaluation (step 2) ends the run.
    early = {"eval_every_steps": 1, "early_stopping_patience": 1, "early_stopping_min_delta": 10}
    first = run(client, project, early)
    assert first["status"] == "succeeded", first["error"]
    v1 = versions(client, project)[1]
    assert v1["stopped_early"] is True and v1["parent_id"] is None
    metrics = v1["metrics"]
    assert metrics["early_stopped_at_step"] == metrics["steps"] == 2
    assert metrics["best_step"] in (1, 2) and metrics["adapter_step"] == metrics["best_step"]
    assert metrics["best_eval_loss"] <= metrics["eval_loss"]

    second = run(client, project, {"rank": 16, "epochs": 1}, continue_from=1)
    assert second["status"] == "succeeded", second["error"]
    assert second["parent_version_id"] == v1["id"]
    v2 = versions(client, project)[2]
    assert v2["parent_id"] == v1["id"] and v2["config"]["rank"] == v1["config"]["rank"]
    assert v2["stopped_early"] is False and v2["metrics"]["early_stopped_at_step"] is None
    log = client.get(f"/jobs/{second['id']}").text
    assert "Starts from the adapter of v1" in log and "v2 ← v1" in log
    assert "v2 ← v1" in client.get(f"/projects/{project['id']}").text

    # The starting version's files are gone by the time the run starts: a clear failure.
    shutil.rmtree(adapter_dir(v1["id"]))
    third = run(client, project, {"epochs": 1}, continue_from=1)
    assert third["status"] == "failed" and third["step"] == 0
    assert (third["error_code"], third["error_params"]) == (
        "parent_version_missing",
        {"version": 1},
    )
