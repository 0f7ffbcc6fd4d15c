"""Evaluations end to end on real workers: POST /api/evaluations → `eval` queue (the training
worker's process) → perplexity, batched generation, BLEU/ROUGE → results, examples, downloads,
cancel, blind review; and chat keeps streaming from the main worker while one runs.

The base is the tiny random Llama; v1 and v2 are real PEFT adapters with random non-zero
weights (tests/inference/helpers.build_adapter), so each model answers differently.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from typing import Any

import pytest

from tests.helpers.versions import add_version
from tests.workers.test_chat_serving import new_chat, read_stream, send

ROWS = [
    {"instruction": f"张家界景点 {i} 在哪里？", "output": f"景点 {i} 在武陵源，乘环保车可到。"}
    for i in range(6)
] + [
    {"instruction": f"Where is spot {i}?", "output": f"Spot {i} is in Wulingyuan."}
    for i in range(4)
]


@pytest.fixture
def project(client, tiny_model_dir, db_session, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from tests.inference.helpers import build_adapter

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "eval", "base_model": model["id"]}).json()
    for number in (1, 2):
        adapter = build_adapter(tiny_model_dir, tmp_path / f"adapter-{number}", seed=number)
        add_version(db_session, project["id"], number, adapter, model["id"])
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("held_out.jsonl", content)}
    ).json()
    return {**project, "dataset_id": dataset["id"]}


def wait(client, evaluation_id: int, until, timeout: float = 240) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evaluation = client.get(f"/api/evaluations/{evaluation_id}").json()
        if until(evaluation):
            return evaluation
        time.sleep(0.2)
    raise AssertionError(
        f"evaluation stuck: {client.get(f'/api/evaluations/{evaluation_id}').json()}"
    )


def ended(evaluation: dict) -> bool:
    return evaluation["status"] in ("succeeded", "failed", "cancelled")


def start(client, project, **body) -> int:  # type: ignore[no-untyped-def]
    response = client.post(
        "/api/evaluations",
        json={"project_id": project["id"], "dataset_id": project["dataset_id"], **body},
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return int(response.json()["id"])


def test_evaluation_scores_base_and_versions(client, worker, project) -> None:  # type: ignore[no-untyped-def]
    evaluation_id = start(client, project, max_new_tokens=12, include_general=True)
    result = wait(client, evaluation_id, ended)
    assert result["status"] == "succeeded", result
    assert result["versions"] == ["base", "v1", "v2"]  # default: the base and every version
    assert result["settings"]["temperature"] == 0 and "source" not in result["settings"]
    assert result["methods"]["bleu4"]["library"] == "sacrebleu"
    by_version = {r["version"]: r for r in result["results"]}
    for summary in by_version.values():
        assert summary["n"] == len(ROWS)
        assert summary["perplexity"] > 1 and math.isfinite(summary["perplexity"])
        assert summary["general_perplexity"] > 1
        for metric in ("bleu4", "rouge1", "rouge2", "rougeL"):
            assert 0 <= summary[metric] <= 100
        assert 0 < summary["avg_answer_tokens"] <= 12
    # Random adapters change the model: each version scores its own perplexity.
    assert len({round(s["perplexity"], 6) for s in by_version.values()}) == 3
    best = min(by_version.values(), key=lambda s: s["perplexity"])["version"]
    assert result["best"]["perplexity"] == best

    listing = client.get(f"/api/evaluations/{evaluation_id}/examples").json()
    assert listing["count"] == len(ROWS)
    # Corpus perplexity is exp(total NLL / total answer tokens) over the stored per-example
    # figures, not the mean of per-example perplexities.
    from app.db import get_sessionmaker
    from app.models import EvaluationExample

    with get_sessionmaker()() as session:
        rows = session.query(EvaluationExample).filter_by(evaluation_id=evaluation_id).all()
    domain = [r for r in rows if r.subset == "domain"]
    assert len(rows) > len(domain)  # the general sample was scored too
    for label, summary in by_version.items():
        nll = sum(r.outputs[label]["nll"] for r in domain)
        tokens = sum(r.outputs[label]["answer_tokens"] for r in domain)
        assert summary["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-9)
        mean = sum(r.outputs[label]["perplexity"] for r in domain) / len(domain)
        assert summary["perplexity"] != pytest.approx(mean, rel=1e-6)

    # Worst first: the highest perplexity of v1 leads.
    ranked = client.get(f"/api/evaluations/{evaluation_id}/examples?sort=v1:perplexity").json()
    values = [e["outputs"]["v1"]["perplexity"] for e in ranked["data"]]
    assert values == sorted(values, reverse=True)
    ranked = client.get(f"/api/evaluations/{evaluation_id}/examples?sort=v2:rougeL").json()
    values = [e["outputs"]["v2"]["rougeL"] for e in ranked["data"]]
    assert values == sorted(values)
    bad = client.get(f"/api/evaluations/{evaluation_id}/examples?sort=v9:rougeL")
    assert bad.status_code == 422

    download = client.get(f"/api/evaluations/{evaluation_id}/examples?format=csv")
    assert download.headers["content-disposition"].startswith("attachment")
    table = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert len(table) == len(ROWS) and "v2_answer" in table[0]
    assert table[0]["prompt"] == ROWS[0]["instruction"]
    lines = client.get(f"/api/evaluations/{evaluation_id}/examples?format=jsonl").text.splitlines()
    assert [json.loads(line)["reference"] for line in lines] == [r["output"] for r in ROWS]

    listed = client.get(f"/api/projects/{project['id']}/evaluations").json()
    assert [e["id"] for e in listed["data"]] == [evaluation_id]


def test_blind_review_records_choices_and_win_rates(client, worker, project) -> None:  # type: ignore[no-untyped-def]
    evaluation_id = start(client, project, versions=["base", "v1"], max_new_tokens=4)
    assert wait(client, evaluation_id, ended)["status"] == "succeeded"
    seen = set()
    for _ in range(3):
        pair = client.get(f"/api/evaluations/{evaluation_id}/review/next").json()
        assert not pair["done"] and {pair["left"]["label"], pair["right"]["label"]} == {
            "base",
            "v1",
        }
        seen.add(pair["position"])
        winner = "left" if pair["left"]["label"] == "v1" else "right"
        vote = client.post(
            f"/api/evaluations/{evaluation_id}/review",
            json={
                "position": pair["position"],
                "left": pair["left"]["label"],
                "right": pair["right"]["label"],
                "choice": winner,
                "scores": {winner: {"relevance": 5, "fluency": 4}},
            },
        )
        assert vote.status_code == 201, vote.text
    assert len(seen) == 3  # an example once voted on is not offered again
    [tally] = client.get(f"/api/evaluations/{evaluation_id}/review").json()["tally"]
    assert (tally["model_a"], tally["model_b"], tally["a"], tally["b"]) == ("base", "v1", 0, 3)
    assert tally["b_rate"] == 1.0 and tally["scores"]["b"]["relevance"] == 5
    bad = client.post(
        f"/api/evaluations/{evaluation_id}/review",
        json={"position": 0, "left": "base", "right": "v1", "choice": "tie",
              "scores": {"left": {"accuracy": 9}}},
    )  # fmt: skip
    assert (
        bad.status_code == 422
        and bad.json()["error"]["details"][0]["field"] == "scores.left.accuracy"
    )


def test_chat_streams_while_an_evaluation_runs_and_cancel_stops_it(client, worker, project) -> None:  # type: ignore[no-untyped-def]
    # Long enough that it cannot finish during the chat: 2 x 200 answers of 2048 tokens.
    rows = [{"instruction": f"问题 {i}", "output": f"回答 {i}"} for i in range(200)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("long.jsonl", content)}
    ).json()
    evaluation_id = start(
        client,
        {**project, "dataset_id": dataset["id"]},
        versions=["base", "v1"],
        max_new_tokens=2048,
    )
    wait(client, evaluation_id, lambda e: (e["progress"] or {}).get("phase") == "generation")
    conversation = new_chat(client, project, model="v1", max_new_tokens=16)
    [request_id] = send(client, conversation, "天门山怎么去？")
    events = read_stream(client, request_id)
    assert events[-1][0] == "done", events[-3:]
    # The chat was answered while the evaluation was still generating.
    assert client.get(f"/api/evaluations/{evaluation_id}").json()["status"] == "running"
    cancel = client.post(f"/api/evaluations/{evaluation_id}/cancel")
    assert cancel.status_code == 200
    assert wait(client, evaluation_id, ended, timeout=60)["status"] == "cancelled"
    assert client.get(f"/api/evaluations/{evaluation_id}/examples").json()["count"] == 0
    again = client.post(f"/api/evaluations/{evaluation_id}/cancel")
    assert again.status_code == 409


def test_bad_requests_say_which_field(client, project) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/api/evaluations",
        json={"project_id": project["id"], "dataset_id": project["dataset_id"], "versions": ["v7"]},
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "versions"
    response = client.post("/api/evaluations", json={"project_id": project["id"]})
    assert response.json()["error"]["details"][0]["field"] == "dataset_id"
    response = client.post(
        "/api/evaluations",
        json={
            "project_id": project["id"],
            "dataset_id": project["dataset_id"],
            "max_new_tokens": 0,
        },
    )
    assert response.json()["error"]["details"][0]["field"] == "max_new_tokens"
    assert client.get("/api/evaluations/999999").status_code == 404
    other = client.post(
        "/api/projects", json={"name": "other", "base_model": "smollm2-135m-instruct"}
    )
    response = client.post(
        "/api/evaluations",
        json={"project_id": other.json()["id"], "dataset_id": project["dataset_id"]},
    )
    assert response.status_code == 422  # a dataset of another project is not a choice


def test_a_runs_validation_split_is_a_test_set(client, worker, project, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """job_id evaluates on exactly the rows training held out (re-drawn with the job's seed)."""
    from app.config import get_settings
    from app.datasets.split import split_rows

    job = client.post(
        f"/api/projects/{project['id']}/jobs",
        json={
            "dataset_id": project["dataset_id"],
            "config": {"max_length": 64, "epochs": 1, "batch_size": 4, "val_percent": 30,
                       "rank": 4, "alpha": 8, "seed": 7},
        },
    )  # fmt: skip
    assert job.status_code == 201, job.text
    deadline = time.monotonic() + 180
    while client.get(f"/api/jobs/{job.json()['id']}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, client.get(f"/api/jobs/{job.json()['id']}").json()
        time.sleep(0.3)
    response = client.post(
        "/api/evaluations",
        json={"project_id": project["id"], "job_id": job.json()["id"], "versions": ["base", "v3"],
              "max_new_tokens": 4},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    result = wait(client, response.json()["id"], ended)
    assert result["status"] == "succeeded", result
    # The web's own split of the same file with the same seed and share names the same rows.
    normalized = get_settings().paths.normalized(project["dataset_id"])
    _, val_rows = split_rows(normalized, tmp_path / "t.jsonl", tmp_path / "v.jsonl", 0.3, 7)
    expected = [
        json.loads(line)["messages"][-1]["content"]
        for line in (tmp_path / "v.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    got = client.get(f"/api/evaluations/{result['id']}/examples").json()["data"]
    assert [e["reference"] for e in got] == expected and len(expected) == val_rows == 3
    no_split = client.post(
        f"/api/projects/{project['id']}/jobs",
        json={"dataset_id": project["dataset_id"], "config": {"val_percent": 0, "max_length": 64}},
    ).json()
    client.post(f"/api/jobs/{no_split['id']}/cancel")
    refused = client.post(
        "/api/evaluations", json={"project_id": project["id"], "job_id": no_split["id"]}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "job_id"
