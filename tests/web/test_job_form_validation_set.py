"""The training form's validation-data choice: a split, or another dataset of the project."""

from __future__ import annotations

import json


def _dataset(client, project_id: int, name: str, n: int) -> dict:  # type: ignore[no-untyped-def]
    rows = [{"instruction": f"{name} 问题 {i}", "output": f"答案 {i}"} for i in range(n)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    response = client.post(f"/api/projects/{project_id}/datasets", files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return response.json()


def test_form_offers_a_held_out_dataset_and_explains_mistakes(client) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "form"}).json()
    train = _dataset(client, project["id"], "train.jsonl", 12)
    held_out = _dataset(client, project["id"], "held_out.jsonl", 3)

    page = client.get(f"/projects/{project['id']}/runs/new").text
    # The held-out set is newer but smaller: the training set stays the default.
    train_select = page.split('id="f-dataset_id"')[1].split("</select>")[0]
    assert f'value="{train["id"]}" selected' in train_select
    select = page.split('id="f-val_dataset_id"')[1].split("</select>")[0]
    assert '<option value="">' in select  # the split, chosen by default
    assert f'value="{held_out["id"]}"' in select and "held_out.jsonl · 3" in select

    form = {"dataset_id": str(train["id"]), "val_dataset_id": str(train["id"]), "epochs": "1"}
    response = client.post(f"/projects/{project['id']}/jobs", data=form)
    assert response.status_code == 422
    assert "The validation dataset is the training dataset" in response.text
    assert client.get(f"/api/projects/{project['id']}/jobs").json()["count"] == 0

    # The estimate counts every training row when a held-out set is chosen (12 rows / batch 4).
    form["val_dataset_id"], form["val_percent"], form["batch_size"] = str(held_out["id"]), "50", "4"
    estimate = client.post(f"/projects/{project['id']}/jobs/estimate", data=form).text
    assert 'id="est-steps">3<' in estimate, estimate

    response = client.post(f"/projects/{project['id']}/jobs", data=form, follow_redirects=False)
    assert response.status_code in (302, 303), response.text
    job = client.get(f"/api/projects/{project['id']}/jobs").json()["data"][0]
    assert job["val_dataset_id"] == held_out["id"] and job["config"]["val_percent"] == 0
