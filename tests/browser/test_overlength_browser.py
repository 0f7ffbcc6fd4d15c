"""The training form in a real browser: the count of rows over max length follows max_length as
the user edits it, next to the truncate/drop choice. Token statistics come from a real worker
with the tiny model's tokenizer; the expected counts from the same tokenizer in the test."""

from __future__ import annotations

import json
import time

import httpx
from playwright.sync_api import expect

from tests.helpers.datasets import growing_answers


def test_overlength_count_follows_max_length(
    page, live_server, worker, tiny_model_dir, tiny_tokenizer
) -> None:  # type: ignore[no-untyped-def]  # noqa: E501
    from workers.ml.chat_format import tokenize_conversation

    api = httpx.Client(base_url=live_server, timeout=30)
    model = api.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = api.post("/api/projects", json={"name": "long", "base_model": model["id"]}).json()
    content = growing_answers(10, 8)
    dataset = api.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("long.jsonl", content)}
    ).json()
    deadline = time.monotonic() + 120
    while dataset["stats_status"] not in ("ready", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        dataset = api.get(f"/api/datasets/{dataset['id']}").json()
    assert dataset["stats_status"] == "ready", dataset["stats_error"]
    normalized = api.get(f"/api/datasets/{dataset['id']}/files/normalized").text.splitlines()
    lengths = [
        len(tokenize_conversation(tiny_tokenizer, json.loads(line)["messages"]).input_ids)
        for line in normalized
    ]

    page.goto(f"{live_server}/projects/{project['id']}/runs/new")
    page.select_option("#f-dataset_id", str(dataset["id"]))
    for limit in sorted({sorted(lengths)[3], sorted(lengths)[7], max(lengths)}):
        page.fill("#f-max_length", str(limit))
        page.press("#f-max_length", "Tab")
        over = sum(n > limit for n in lengths)
        expect(page.locator("#est-overlength")).to_have_text(str(over))
        note = page.locator("#overlength-note")
        if over:
            expect(note).to_have_text(
                f"{over} of {len(lengths)} rows are longer than {limit} tokens."
            )
        else:
            expect(note).to_have_text(f"No row is longer than {limit} tokens.")
    page.select_option("#f-overlength", "drop")
    expect(page.locator("#f-overlength")).to_have_value("drop")
