"""Estimates from a real training worker's measured throughput, and over-length rows end to end.

A real Celery worker (tests/conftest.py `worker`, serving the train queue) measures its probe at
start and publishes it with its heartbeat; jobs keep the estimate made from it and the job page
sets it against the actual run. The second worker with a GPU is a heartbeat written by the test:
no GPU exists here. Over-length rows use a dataset whose token lengths the test measures with
the tiny model's tokenizer, on the rows as the platform normalized them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from app.redis_keys import worker_heartbeat_key
from app.services import estimates
from tests.helpers.datasets import growing_answers

MAX_LENGTH = 96
CONFIG = {
    "max_length": MAX_LENGTH,
    "epochs": 1,
    "batch_size": 4,
    "val_percent": 0,
    "rank": 4,
    "alpha": 8,
    "gradient_checkpointing": False,
}


def wait_for(what: Callable[[], Any], timeout: float = 180, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def finished(client, job_id: int) -> dict:  # type: ignore[no-untyped-def]
    def done() -> dict | None:
        job = client.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done)


@pytest.fixture
def setup(client, worker, tiny_model_dir, tiny_tokenizer) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A project on the tiny model with a dataset of conversations around MAX_LENGTH tokens,
    its statistics ready, and the token length of each normalized row."""
    from workers.ml.chat_format import tokenize_conversation

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "est", "base_model": model["id"]}).json()
    content = growing_answers(16, 6)
    url = f"/api/projects/{project['id']}/datasets"
    dataset = client.post(url, files={"file": ("rows.jsonl", content)}).json()
    dataset = wait_for(
        lambda: (
            (d := client.get(f"/api/datasets/{dataset['id']}").json())["stats_status"]
            in ("ready", "failed")
            and d
        )
    )
    assert dataset["stats_status"] == "ready", dataset["stats_error"]
    normalized = client.get(f"/api/datasets/{dataset['id']}/files/normalized").text.splitlines()
    examples = [
        tokenize_conversation(tiny_tokenizer, json.loads(r)["messages"]) for r in normalized
    ]
    lengths = [len(e.input_ids) for e in examples]
    # Truncated rows must keep answer tokens, or they would be dropped for having none.
    cut = [tokenize_conversation(tiny_tokenizer, json.loads(r)["messages"], max_length=MAX_LENGTH)
           for r in normalized]  # fmt: skip
    assert all(any(t != -100 for t in e.labels[1:]) for e in cut)
    over = sum(n > MAX_LENGTH for n in lengths)
    assert 0 < over < len(lengths)
    return {"project": project, "dataset": dataset, "model": model, "lengths": lengths}


def train_heartbeat(redis_url: str) -> dict[str, Any]:
    """The test worker's heartbeat once it carries its measured throughput."""
    r = redis.Redis.from_url(redis_url)

    def measured() -> dict[str, Any] | None:
        for key in r.scan_iter(match="tunelab:worker:*"):
            beat = json.loads(r.get(key) or "{}")
            if "train" in beat.get("queues", []) and beat.get("throughput"):
                return beat
        return None

    return wait_for(measured, timeout=120)


def create(client, setup, **config) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/api/projects/{setup['project']['id']}/jobs",
        json={"dataset_id": setup["dataset"]["id"], "config": {**CONFIG, **config}},
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_job_estimate_uses_the_workers_published_throughput(client, setup, platform_env) -> None:  # type: ignore[no-untyped-def]
    redis_url = platform_env["TUNELAB_REDIS_URL"]
    beat = train_heartbeat(redis_url)
    assert beat["throughput"]["probe"] == estimates.PROBE_NAME and beat["throughput"]["gflops"] > 0
    tokens = sum(min(n, MAX_LENGTH) for n in setup["lengths"])
    params = setup["model"]["parameter_count"]

    # The worker publishes the best of its three measurements, a minute apart, so the figure
    # only grows: the job's lies between the first one seen and the latest.
    job = create(client, setup)
    estimate = job["estimate"]
    assert estimate["worker"] == beat["hostname"] and estimate["rough"] is False
    latest = train_heartbeat(redis_url)["throughput"]["gflops"]
    assert beat["throughput"]["gflops"] <= estimate["gflops"] <= latest
    assert estimate["tokens"] == tokens
    speed = estimates.tokens_per_second(estimate["gflops"], params, checkpointing=False)
    assert estimate["seconds"] == pytest.approx(tokens / speed, abs=0.05)

    # The job page sets the estimate against the run once it ended.
    job = finished(client, job["id"])
    assert job["status"] == "succeeded", job["error"]
    page = client.get(f"/jobs/{job['id']}").text
    assert 'id="job-estimate"' in page and beat["hostname"] in page
    assert 'id="job-actual"' in page and "× the estimate" in page

    # A faster worker elsewhere (a GPU one: a written heartbeat, none exists here) is the one
    # named, and its figure sets the time: twice the figure, half the time.
    r = redis.Redis.from_url(redis_url)
    key = worker_heartbeat_key("train-gpu@elsewhere")
    try:
        seconds = []
        for gflops in (5000.0, 10000.0):
            fake = {"hostname": "train-gpu@elsewhere", "queues": ["train"], "accelerator": "cuda",
                    "throughput": {"probe": estimates.PROBE_NAME, "gflops": gflops, "device": "cuda"}}  # fmt: skip
            r.set(key, json.dumps(fake), ex=60)
            job = create(client, setup)
            client.post(f"/api/jobs/{job['id']}/cancel")  # only its estimate matters
            estimate = job["estimate"]
            assert (estimate["worker"], estimate["gflops"]) == ("train-gpu@elsewhere", gflops)
            seconds.append(estimate["seconds"])
            form = {
                "dataset_id": str(setup["dataset"]["id"]),
                **{k: str(v) for k, v in CONFIG.items()},
            }
            box = client.post(f"/projects/{setup['project']['id']}/jobs/estimate", data=form).text
            assert "train-gpu@elsewhere" in box and 'id="est-basis"' in box
        assert seconds[1] == pytest.approx(seconds[0] / 2, abs=0.05)
    finally:
        r.delete(key)


def test_form_counts_overlength_rows_and_the_choice_takes_effect(client, setup) -> None:  # type: ignore[no-untyped-def]
    lengths, project_id = setup["lengths"], setup["project"]["id"]
    form = {"dataset_id": str(setup["dataset"]["id"]), **{k: str(v) for k, v in CONFIG.items()}}
    for limit in (MAX_LENGTH, MAX_LENGTH // 2, max(lengths)):
        box = client.post(
            f"/projects/{project_id}/jobs/estimate", data={**form, "max_length": str(limit)}
        ).text
        over = sum(n > limit for n in lengths)
        assert f'id="est-overlength">{over}<' in box, box
        assert 'id="overlength-note" hx-swap-oob="true"' in box
        if over:
            assert f"{over} of {len(lengths)} rows are longer than {limit} tokens" in box
    page = client.get(f"/projects/{project_id}/runs/new").text
    assert 'name="overlength"' in page and 'id="overlength-note"' in page

    over = sum(n > MAX_LENGTH for n in lengths)
    for mode in ("drop", "truncate"):
        job = finished(client, create(client, setup, overlength=mode, val_percent=25)["id"])
        assert job["status"] == "succeeded", job["error"]
        data = job["result"]["info"]["data"]
        dropped = sum(data[s]["dropped"].get("over_max_length", 0) for s in ("train", "val"))
        truncated = sum(data[s]["truncated"] for s in ("train", "val"))
        assert (dropped, truncated) == ((over, 0) if mode == "drop" else (0, over))
        kept = len(lengths) - dropped
        assert (
            job["result"]["info"]["train_examples"] + job["result"]["info"]["val_examples"] == kept
        )
        page = client.get(f"/jobs/{job['id']}").text
        words = "were left out" if mode == "drop" else "were truncated"
        assert f"{over} rows longer than {MAX_LENGTH} tokens {words}" in page
