"""The training form in a real browser: choosing a held-out validation dataset greys out the
split's share and the estimate counts every training row."""

from __future__ import annotations

import json

import httpx
from playwright.sync_api import expect


def _upload(api: httpx.Client, project_id: int, name: str, n: int) -> dict:
    rows = [{"instruction": f"{name} 问题 {i}", "output": f"答案 {i}"} for i in range(n)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    response = api.post(f"/api/projects/{project_id}/datasets", files={"file": (name, content)})
    assert response.status_code == 201, response.text
    return response.json()


def test_held_out_set_replaces_the_split(page, live_server) -> None:  # type: ignore[no-untyped-def]
    api = httpx.Client(base_url=live_server, timeout=30)
    project = api.post("/api/projects", json={"name": "form"}).json()
    held_out = _upload(api, project["id"], "held_out.jsonl", 4)
    train = _upload(api, project["id"], "train.jsonl", 20)

    page.goto(f"{live_server}/projects/{project['id']}/runs/new")
    page.select_option("#f-dataset_id", str(train["id"]))
    expect(page.locator("#f-val_percent")).to_be_enabled()
    expect(page.locator("#est-steps")).to_have_text("5")  # 18 rows after a 10 % split, batch 4
    page.select_option("#f-val_dataset_id", str(held_out["id"]))
    expect(page.locator("#f-val_percent")).to_be_disabled()
    expect(page.locator("#est-steps")).to_have_text("5")  # 20 rows, batch 4
    page.fill("#f-batch_size", "2")
    page.press("#f-batch_size", "Tab")  # "change" on leaving the field, as a user would
    expect(page.locator("#est-steps")).to_have_text("10")
    page.select_option("#f-val_dataset_id", "")
    expect(page.locator("#f-val_percent")).to_be_enabled()
    expect(page.locator("#est-steps")).to_have_text("9")  # 18 rows, batch 2
