"""Chat in a real browser with a freshly trained adapter: the answer streams in token by token,
and the compare view streams the base model and the adapter side by side."""

from __future__ import annotations

import json
import time

import httpx
from playwright.sync_api import expect

ROWS = [{"instruction": f"景点 {i} 在哪里？", "output": f"景点 {i} 在武陵源。"} for i in range(16)]

# Records every length the streaming answers reach, so the test can tell streaming from a
# single final paint.
WATCH = """
window.__lengths = [];
new MutationObserver(() => {
  document.querySelectorAll('.content.streaming').forEach(el => {
    window.__lengths.push(el.textContent.length);
  });
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def trained_project(api: httpx.Client, tiny_model_dir) -> dict:  # type: ignore[no-untyped-def]
    model = api.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = api.post("/api/projects", json={"name": "chat ui", "base_model": model["id"]}).json()
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = api.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    job = api.post(
        f"/api/projects/{project['id']}/jobs",
        json={
            "dataset_id": dataset["id"],
            "config": {"max_length": 64, "epochs": 1, "batch_size": 4, "val_percent": 0},
        },
    ).json()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = api.get(f"/api/jobs/{job['id']}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert job["status"] == "succeeded", job
    return project


def test_chat_streams_from_a_fresh_adapter_and_compares(
    page, live_server, worker, tiny_model_dir
) -> None:  # type: ignore[no-untyped-def]
    api = httpx.Client(base_url=live_server, timeout=30)
    project = trained_project(api, tiny_model_dir)

    page.goto(f"{live_server}/projects/{project['id']}")
    page.click("#open-chat")
    page.select_option("#new-model", "v1")
    page.select_option("#new-compare", "")
    page.click("#new-chat")
    expect(page.locator("#conversation-title")).to_be_visible()
    page.click("summary")
    page.fill("#c-max", "120")
    with page.expect_navigation():  # saving settings reloads the conversation
        page.click(".chat-settings button[type=submit]")

    page.evaluate(WATCH)
    page.fill("#chat-text", "张家界门票多少钱？")
    page.keyboard.press("Enter")  # Enter sends
    # Sent: the box empties and the "no messages yet" note goes (static/js/chat.js).
    expect(page.locator("#chat-text")).to_have_value("")
    expect(page.locator("#chat-empty")).to_have_count(0)
    answer = page.locator(".bubble-assistant").last
    expect(answer).to_have_attribute("data-state", "done", timeout=60_000)
    lengths = page.evaluate("window.__lengths")
    assert len({n for n in lengths if n > 0}) >= 3, f"no streaming seen: {lengths[:20]}"
    expect(answer.locator(".answer-stats")).to_contain_text("tokens/s")
    expect(answer.locator(".badge").first).to_have_text("v1")

    # Compare: the base model and v1 answer the same question side by side.
    page.click("summary")
    page.select_option("#c-compare", "base")
    with page.expect_navigation():
        page.click(".chat-settings button[type=submit]")
    expect(page.locator("#turns.compare")).to_be_visible()
    page.evaluate(WATCH)
    page.fill("#chat-text", "天门山怎么去？")
    page.click("#send")
    last_turn = page.locator(".turn").last
    expect(last_turn.locator(".bubble-assistant")).to_have_count(2)
    expect(last_turn.locator(".bubble-assistant[data-state=done]")).to_have_count(2, timeout=60_000)
    badges = last_turn.locator(".bubble-assistant .badge").all_inner_texts()
    assert set(badges) >= {"v1", "base"}
    lengths = page.evaluate("window.__lengths")
    assert len({n for n in lengths if n > 0}) >= 3
    last_turn.locator(".vote button").first.click()
    expect(page.locator(".vote-done")).to_be_visible()
