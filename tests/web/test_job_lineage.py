"""Going round again: "continue from vN" on job creation (API and form), the early-stopping rule
that needs validation data, and the version lineage the project and job pages show.

Versions are inserted as rows (no training here); tests/workers/test_training_lineage.py runs
the whole loop on a real worker."""

from __future__ import annotations

import json
from typing import Any

from app.models import ModelVersion
from app.schemas.training import TrainingConfig


def _dataset(client, project_id: int, name: str, n: int) -> dict:  # type: ignore[no-untyped-def]
    rows = [{"instruction": f"{name} 问题 {i}", "output": f"答案 {i}"} for i in range(n)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    response = client.post(f"/api/projects/{project_id}/datasets", files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return response.json()


def _version(db_session, project: dict, number: int, **fields: Any) -> ModelVersion:  # type: ignore[no-untyped-def]
    values: dict[str, Any] = {
        "project_id": project["id"],
        "version": number,
        "adapter_path": f"/nowhere/v{number}",
        "base_model": project["base_model"],
        "config": TrainingConfig(rank=4, alpha=8, target_modules=["q_proj"]).model_dump(
            mode="json"
        ),
        "dataset_sha256": "0" * 64,
        "dataset_name": "rows.jsonl",
        "libraries": {},
        "metrics": {"train_loss": 1.5, "eval_loss": 1.9, "steps": 12},
    }
    version = ModelVersion(**{**values, **fields})
    db_session.add(version)
    db_session.commit()
    return version


def _setup(client, db_session) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "again"}).json()
    dataset = _dataset(client, project["id"], "rows.jsonl", 12)
    v1 = _version(db_session, project, 1)
    metrics = {
        "train_loss": 1.2,
        "eval_loss": 1.6,
        "steps": 9,
        "best_step": 6,
        "best_eval_loss": 1.4321,
        "adapter_step": 6,
        "early_stopped_at_step": 9,
    }
    v2 = _version(db_session, project, 2, parent_id=v1.id, metrics=metrics, stopped_early=True)
    other = _version(db_session, project, 3, parent_id=v2.id, base_model="some-other-model")
    return {"project": project, "dataset": dataset, "v1": v1, "v2": v2, "other": other}


def test_api_continue_from_checks_the_version_and_inherits_its_adapter(client, db_session) -> None:  # type: ignore[no-untyped-def]
    s = _setup(client, db_session)
    url = f"/api/projects/{s['project']['id']}/jobs"
    body: dict[str, Any] = {"dataset_id": s["dataset"]["id"], "config": {"rank": 16, "alpha": 32}}

    missing = client.post(url, json={**body, "continue_from": 9})
    assert missing.status_code == 422
    error = missing.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"] == [
        {"field": "continue_from", "message": "This project has no version v9."}
    ]
    other = client.post(
        url, json={**body, "continue_from": 3}, headers={"Accept-Language": "zh-CN"}
    )
    assert other.status_code == 422
    detail = other.json()["error"]["details"][0]
    assert detail["field"] == "continue_from" and "v3" in detail["message"]
    assert "some-other-model" in detail["message"] and "同一基础模型" in detail["message"]
    assert client.get(url).json()["count"] == 0

    created = client.post(
        url, json={**body, "config": {**body["config"], "learning_rate": 1e-3}, "continue_from": 2}
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["parent_version_id"] == s["v2"].id
    # The version's adapter shape wins over the request's; the rest is the new run's.
    assert (job["config"]["rank"], job["config"]["alpha"]) == (4, 8)
    assert job["config"]["target_modules"] == ["q_proj"]
    assert job["config"]["learning_rate"] == 1e-3

    # A clone starts where its source started, unless told otherwise.
    clone = client.post(f"/api/jobs/{job['id']}/clone", json={}).json()
    assert clone["parent_version_id"] == s["v2"].id
    fresh = client.post(f"/api/jobs/{job['id']}/clone", json={"continue_from": None}).json()
    assert fresh["parent_version_id"] is None

    versions = client.get(f"/api/projects/{s['project']['id']}/versions").json()["data"]
    assert {v["version"]: v["parent_id"] for v in versions} == {
        3: s["v2"].id,
        2: s["v1"].id,
        1: None,
    }


def test_early_stopping_needs_validation_data(client, db_session) -> None:  # type: ignore[no-untyped-def]
    s = _setup(client, db_session)
    url = f"/api/projects/{s['project']['id']}/jobs"
    config = {"early_stopping_patience": 2, "val_percent": 0}
    response = client.post(url, json={"dataset_id": s["dataset"]["id"], "config": config})
    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "early_stopping_patience"
    assert detail["message"].startswith("Early stopping needs validation data")

    held_out = _dataset(client, s["project"]["id"], "held_out.jsonl", 3)
    body = {"dataset_id": s["dataset"]["id"], "config": config, "val_dataset_id": held_out["id"]}
    assert client.post(url, json=body).status_code == 201
    config["val_percent"] = 20
    assert (
        client.post(url, json={"dataset_id": s["dataset"]["id"], "config": config}).status_code
        == 201
    )


def test_form_offers_the_versions_and_explains_mistakes(client, db_session) -> None:  # type: ignore[no-untyped-def]
    s = _setup(client, db_session)
    project_id = s["project"]["id"]
    page = client.get(f"/projects/{project_id}/runs/new").text
    select = page.split('id="f-continue_from"')[1].split("</select>")[0]
    assert '<option value="">The base model' in select  # the default: nothing else selected
    assert "selected" not in select
    assert 'value="2"' in select and 'value="1"' in select and "v2 (r 4, alpha 8)" in select
    assert 'value="3"' not in select  # another base model: cannot be continued from
    assert "its rank, alpha and target modules are used" in page
    assert 'name="keep_best" id="f-keep_best" checked' in page
    assert 'id="f-early_stopping_patience"' in page

    form = {"dataset_id": str(s["dataset"]["id"]), "continue_from": "9", "keep_best": "on"}
    response = client.post(f"/projects/{project_id}/jobs", data=form)
    assert response.status_code == 422
    assert "This project has no version v9." in response.text
    form = {
        "dataset_id": str(s["dataset"]["id"]),
        "val_percent": "0",
        "early_stopping_patience": "3",
    }
    response = client.post(f"/projects/{project_id}/jobs", data=form)
    assert response.status_code == 422 and "Early stopping needs validation data" in response.text

    form = {"dataset_id": str(s["dataset"]["id"]), "continue_from": "2", "epochs": "1"}
    response = client.post(f"/projects/{project_id}/jobs", data=form, follow_redirects=False)
    assert response.status_code in (302, 303), response.text
    job = client.get(f"/api/projects/{project_id}/jobs").json()["data"][0]
    assert job["parent_version_id"] == s["v2"].id
    assert job["config"]["keep_best"] is False  # an unticked box

    # "Clone and edit" keeps the starting version; the job page says where the run starts.
    clone_page = client.get(f"/projects/{project_id}/runs/new?clone={job['id']}").text
    select = clone_page.split('id="f-continue_from"')[1].split("</select>")[0]
    assert 'value="2" selected' in select
    job_page = client.get(f"/jobs/{job['id']}").text
    assert "Starts from the adapter of v2" in job_page
    assert "v2 ← v1" in job_page


def test_project_page_shows_lineage_and_what_the_run_kept(client, db_session) -> None:  # type: ignore[no-untyped-def]
    s = _setup(client, db_session)
    page = client.get(f"/projects/{s['project']['id']}").text
    row = page.split('id="version-2"')[1].split("</tr>")[0]
    assert "v2 ← v1" in row
    assert "lowest eval loss 1.432 at step 6" in row and "adapter from that step" in row
    assert "early stop at step 9" in row
    assert "v3 ← v2 ← v1" in page.split('id="version-3"')[1].split("</tr>")[0]
    v1_row = page.split('id="version-1"')[1].split("</tr>")[0]
    assert "←" not in v1_row and "lowest eval loss" not in v1_row

    db_session.delete(s["v1"])
    db_session.commit()
    page = client.get(f"/projects/{s['project']['id']}", headers={"Accept-Language": "zh-CN"}).text
    row = page.split('id="version-2"')[1].split("</tr>")[0]
    assert "已删除的版本" in row and "第 9 步早停" in row
