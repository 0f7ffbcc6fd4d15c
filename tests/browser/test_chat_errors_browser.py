"""A chat answer that fails reads in the browser's language: shown live from the SSE `error`
event (static/js/chat.js), then as the server renders the stored code after the swap."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

# Records every error text an answer shows with the answer's state at that moment, so the test
# sees the live one (still "streaming") before the server's rendering replaces it.
WATCH = """
window.__alerts = [];
new MutationObserver(() => {
  document.querySelectorAll('.bubble-assistant .alert-error').forEach(el => {
    window.__alerts.push([el.closest('.bubble-assistant').dataset.state, el.textContent]);
  });
}).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def test_a_too_long_question_fails_in_chinese(browser, live_server, worker, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    api = httpx.Client(base_url=live_server, timeout=30)
    model = api.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = api.post("/api/projects", json={"name": "长问题", "base_model": model["id"]}).json()
    conversation = api.post(
        f"/projects/{project['id']}/chat", data={"model": "base"}, follow_redirects=False
    ).headers["location"]

    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{live_server}{conversation}")
        page.evaluate(WATCH)
        page.fill("#chat-text", "word " * 9000)  # longer than the tiny model's context
        page.click("#send")
        answer = page.locator(".bubble-assistant").last
        expect(answer).to_have_attribute("data-state", "error", timeout=60_000)
        alert = answer.locator(".alert-error")
        expect(alert).to_contain_text("这段对话有")
        text = alert.inner_text()
        assert "over the model's limit" not in text
        alerts = page.evaluate("window.__alerts")
        assert all(shown.strip() == text.strip() for _state, shown in alerts), alerts
        assert "streaming" in {state for state, _shown in alerts}, alerts  # shown live first
    finally:
        context.close()
