"""Training jobs end to end on a real worker: queue → train → version, live events, control.

The base model is the tiny random Llama (tests/helpers/tiny_model.py) registered as a local
folder, so each run takes seconds on the CPU.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.helpers.versions import adapter_dir

pytestmark = pytest.mark.both_databases  # the whole run, claim to version, on the team database too

ROWS = [
    {"instruction": f"张家界景点 {i} 在哪里？", "output": f"景点 {i} 在武陵源，乘环保车可到。"}
    for i in range(24)
]
FAST = {
    "max_length": 64,
    "epochs": 2,
    "batch_size": 4,
    "val_percent": 25,
    "rank": 4,
    "alpha": 8,
    "learning_rate": 5e-3,
    "checkpoint_every_steps": 2,
    "eval_every_steps": 3,
}


@pytest.fixture
def setup(client, tiny_model_dir) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "train", "base_model": model["id"]}).json()
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    return {"project": project, "dataset": dataset}


def start(client, setup, **config) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/api/projects/{setup['project']['id']}/jobs",
        json={"dataset_id": setup["dataset"]["id"], "config": {**FAST, **config}},
    )
    assert response.status_code == 201, response.text
    return response.json()


def wait_job(client, job_id: int, until, timeout: float = 180) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} stuck: {client.get(f'/api/jobs/{job_id}').json()}")


def finished(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def sse_events(client, job_id: int) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    out = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                out.append((kind, json.loads(line[6:])))
                if kind == "done":
                    break
    return out


def test_job_trains_and_registers_a_version(client, worker, setup, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    job = start(client, setup)
    assert job["status"] == "queued"
    job = wait_job(client, job["id"], finished)
    assert job["status"] == "succeeded", job["error"]
    versions = client.get(f"/api/projects/{setup['project']['id']}/versions").json()["data"]
    assert [v["version"] for v in versions] == [1]
    v1 = versions[0]
    assert v1["name"] == "train:v1"
    assert v1["dataset_sha256"] == setup["dataset"]["sha256"]
    assert v1["config"]["seed"] == 42 and set(v1["libraries"]) >= {"torch", "transformers", "peft"}

    metrics = client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]
    assert [m["step"] for m in metrics] == list(range(1, job["total_steps"] + 1))
    assert any(m["eval_loss"] is not None for m in metrics)
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "eta_s", "epoch"):
        assert metrics[-1][key] is not None
    streamed = [d for kind, d in sse_events(client, job["id"]) if kind == "metric"]
    assert [m["step"] for m in streamed] == [m["step"] for m in metrics]

    # The adapter is plain PEFT: it loads with peft alone and changes the model's output.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, str(adapter_dir(v1["id"])))
    assert not torch.allclose(before, tuned(ids).logits)

    page = client.get(f"/jobs/{job['id']}")
    points = json.loads(page.text.split("data-points='")[1].split("'")[0])
    assert len(points) == job["total_steps"]
    project_page = client.get(f"/projects/{setup['project']['id']}")
    assert "train:v1" in project_page.text


def test_cancel_resume_and_clone(client, worker, setup) -> None:  # type: ignore[no-untyped-def]
    job = start(client, setup, epochs=40)
    wait_job(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 3)
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    job = wait_job(client, job["id"], finished)
    assert job["status"] == "cancelled"
    stopped_at = job["step"]
    assert client.get(f"/api/projects/{setup['project']['id']}/versions").json()["count"] == 0

    resumed = client.post(f"/api/jobs/{job['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    job = wait_job(
        client, job["id"], lambda j: j["status"] == "running" and j["step"] >= stopped_at + 2
    )
    steps = [m["step"] for m in client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]]
    assert steps == sorted(set(steps)) and steps[0] == 1  # one curve, continued, no duplicates
    assert client.post(f"/api/jobs/{job['id']}/stop").status_code == 200  # stop and save
    job = wait_job(client, job["id"], finished)
    assert job["status"] == "succeeded"
    version = client.get(f"/api/projects/{setup['project']['id']}/versions").json()["data"][0]
    assert version["stopped_early"] is True

    clone = client.post(
        f"/api/jobs/{job['id']}/clone", json={"config": {"learning_rate": 1e-3, "epochs": 1}}
    )
    assert clone.status_code == 201
    clone = clone.json()
    assert clone["cloned_from_id"] == job["id"]
    assert clone["config"]["learning_rate"] == 1e-3 and clone["config"]["rank"] == FAST["rank"]
    clone = wait_job(client, clone["id"], finished)
    assert clone["status"] == "succeeded"
    assert client.get(f"/api/projects/{setup['project']['id']}/versions").json()["count"] == 2


def test_invalid_config_queues_nothing(client, setup) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/api/projects/{setup['project']['id']}/jobs",
        json={
            "dataset_id": setup["dataset"]["id"],
            "config": {"rank": 0, "learning_rate": -1, "bogus": 1},
        },
    )
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert {"rank", "learning_rate", "bogus"} <= fields
    assert client.get(f"/api/projects/{setup['project']['id']}/jobs").json()["count"] == 0


def test_empty_dataset_after_filtering_fails_before_training(client, worker, setup) -> None:  # type: ignore[no-untyped-def]
    # With max_length 16 the prompt alone fills every row: no answer token is left to learn.
    job = wait_job(client, start(client, setup, max_length=16)["id"], finished)
    assert job["status"] == "failed"
    assert job["step"] == 0
    assert job["error"]
    assert job["error_code"] == "no_trainable_rows"
    assert job["error_params"]["max_length"] == 16


def test_live_events_arrive_while_running(client, worker, setup) -> None:  # type: ignore[no-untyped-def]
    job = start(client, setup, epochs=30)
    seen: list[str] = []
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                seen.append(line[7:])
            if seen.count("metric") >= 3:
                break
    assert "status" in seen and seen.count("metric") >= 3
    client.post(f"/api/jobs/{job['id']}/cancel")
    assert wait_job(client, job["id"], finished)["status"] == "cancelled"


def test_separate_validation_dataset(client, worker, setup) -> None:  # type: ignore[no-untyped-def]
    # Held-out questions as their own dataset (LLaMA-Factory's eval_dataset): every training
    # row trains and the eval loss is measured on the held-out set.
    held_out = [{"instruction": f"张家界问题 {i}？", "output": f"答案 {i}。"} for i in range(5)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in held_out).encode()
    project_id, train_id = setup["project"]["id"], setup["dataset"]["id"]
    val = client.post(
        f"/api/projects/{project_id}/datasets", files={"file": ("held_out.jsonl", content)}
    ).json()

    for bad, words in ((train_id, "is the training dataset"), (99_999, "Pick a validation")):
        response = client.post(
            f"/api/projects/{project_id}/jobs",
            json={"dataset_id": train_id, "val_dataset_id": bad, "config": FAST},
        )
        assert response.status_code == 422, response.text
        details = response.json()["error"]["details"]
        assert details[0]["field"] == "val_dataset_id" and words in details[0]["message"], details

    response = client.post(
        f"/api/projects/{project_id}/jobs",
        json={"dataset_id": train_id, "val_dataset_id": val["id"], "config": FAST},
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["val_dataset_sha256"] == val["sha256"] and job["config"]["val_percent"] == 0
    job = wait_job(client, job["id"], finished)
    assert job["status"] == "succeeded", job["error"]
    info = job["result"]["info"]
    assert (info["train_examples"], info["val_examples"]) == (len(ROWS), len(held_out))
    metrics = client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]
    assert any(m["eval_loss"] is not None for m in metrics)
    assert "val-dataset-sha" in client.get(f"/jobs/{job['id']}").text

    # Clone and edit keeps the held-out set.
    clone = client.post(f"/api/jobs/{job['id']}/clone", json={"config": {"epochs": 1}}).json()
    assert clone["val_dataset_id"] == val["id"]
    wait_job(client, clone["id"], finished)


def test_deleted_validation_set_fails_the_resume_with_a_message(client, worker, setup) -> None:  # type: ignore[no-untyped-def]
    project_id = setup["project"]["id"]
    content = "\n".join(
        json.dumps({"instruction": f"问题 {i}？", "output": f"答案 {i}。"}, ensure_ascii=False)
        for i in range(4)
    ).encode()
    val = client.post(
        f"/api/projects/{project_id}/datasets", files={"file": ("held_out.jsonl", content)}
    ).json()
    job = client.post(
        f"/api/projects/{project_id}/jobs",
        json={
            "dataset_id": setup["dataset"]["id"],
            "val_dataset_id": val["id"],
            "config": {**FAST, "epochs": 40},
        },
    ).json()
    wait_job(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 2)
    client.post(f"/api/jobs/{job['id']}/cancel")
    assert wait_job(client, job["id"], finished)["status"] == "cancelled"
    assert client.delete(f"/api/datasets/{val['id']}").status_code == 204

    client.post(f"/api/jobs/{job['id']}/resume")
    job = wait_job(client, job["id"], lambda j: j["status"] == "failed")
    assert job["error_code"] == "validation_set_deleted", job
    assert "validation dataset was deleted" in job["error"], job["error"]  # English, for the API
    assert "pick another validation set" in job["error"]
    # The page says it in the reader's language, with the fix.
    zh = client.get(f"/jobs/{job['id']}", headers={"Accept-Language": "zh-CN"}).text
    assert "此作业的验证数据集已被删除。请点击“复制并修改”，另选一个验证集" in zh
    en = client.get(f"/jobs/{job['id']}", headers={"Accept-Language": "en"}).text
    assert "validation dataset was deleted" in en and "验证数据集" not in en
