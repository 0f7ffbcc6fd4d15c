"""The security headers and escaping in a real browser.

A project, a dataset (its name and rows), a training job, a version, a conversation (its title,
system prompt, question and a Markdown answer) and an evaluation (its test set's name and an
example) all carry a string that is HTML and script at once. Every page that shows one:

- loads under the app's Content-Security-Policy with no violation and no script error, charts
  (Plotly) and htmx included;
- shows the string as text, and runs nothing of it, with the policy switched off in the browser
  (so it is the escaping, not the policy, that is tested).

The chat form still empties itself after a message is sent, now from static/js/chat.js rather
than an inline hx-on handler the policy forbids. No worker: the data is written through the API
and straight to the database (as tests/helpers do), so the module runs in seconds.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from app.models import ChatMessage, Conversation, Dataset, EvaluationExample, ModelVersion
from tests.helpers.evaluations import insert_evaluation
from tests.helpers.versions import add_version

PAYLOAD = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
# Markdown an answer could hold: a script link and an image from elsewhere.
MARKDOWN = f"{PAYLOAD}\n\n[click](javascript:window.__xss=3) ![pic](https://example.com/x.png)"

# Records policy violations and script errors from the first script on.
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""

# Dataset statistics as the worker stores them (workers/ml/dataset_stats.py), so the page draws
# its histogram without a worker.
LENGTHS = [45] * 3 + [55] * 6 + [65] * 3
STATS = {
    "tokenizer": "smollm2-135m-instruct",
    "rows": len(LENGTHS),
    "unsupported_rows": 0,
    "template": "chatml",
    "max_length": 1024,
    "tokens": {
        "total": sum(LENGTHS),
        "min": min(LENGTHS),
        "max": max(LENGTHS),
        "mean": sum(LENGTHS) / len(LENGTHS),
        "p50": 55,
        "p95": 65,
    },
    "trainable_tokens": sum(LENGTHS) // 2,
    "over_max_length": 0,
    "over_max_length_rows": [],
    "duplicates": 0,
    "histogram": {"counts": [3, 6, 3], "edges": [40, 50, 60, 70]},
    "length_counts": [[45, 3], [55, 6], [65, 3]],
}


def _form_post(api: httpx.Client, url: str, data: dict[str, str]) -> httpx.Response:
    response = api.post(url, data=data, follow_redirects=False)
    assert response.status_code in (200, 303), (url, response.text)
    return response


@pytest.fixture
def hostile(live_server, db_session) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Everything a user names, named PAYLOAD; returns the pages that show it."""
    api = httpx.Client(base_url=live_server, timeout=30)
    project = api.post("/api/projects", json={"name": PAYLOAD}).json()
    pid = project["id"]
    rows = [{"instruction": f"{PAYLOAD} {i}", "output": f"{PAYLOAD} out"} for i in range(12)]
    content = "\n".join(json.dumps(r) for r in rows).encode()
    dataset = api.post(
        f"/api/projects/{pid}/datasets",
        files={"file": ("rows.jsonl", content)},
        data={"name": PAYLOAD},
    ).json()
    db_session.execute(
        update(Dataset).where(Dataset.id == dataset["id"]).values(stats_status="ready", stats=STATS)
    )
    db_session.commit()  # before the API writes again: SQLite has one writer at a time
    job = api.post(f"/api/projects/{pid}/jobs", json={"dataset_id": dataset["id"]}).json()
    add_version(db_session, pid, 1, "/nowhere/v1", project["base_model"], dataset_name=PAYLOAD)
    version = db_session.scalars(select(ModelVersion).where(ModelVersion.project_id == pid)).one()

    chat = _form_post(api, f"/projects/{pid}/chat", {"model": "base"}).headers["location"]
    settings = {"title": PAYLOAD, "model": "base", "system_prompt": PAYLOAD}
    _form_post(api, f"{chat}/settings", settings)
    conversation = db_session.scalars(select(Conversation)).one()
    db_session.add_all(
        [
            ChatMessage(conversation_id=conversation.id, role="user", content=PAYLOAD, turn=1),
            ChatMessage(
                conversation_id=conversation.id,
                role="assistant",
                model="base",
                content=MARKDOWN,
                turn=1,
                state="done",
            ),
        ]
    )
    db_session.commit()

    evaluation = insert_evaluation(db_session, pid, versions=["base", "v1"])
    evaluation.source_name = PAYLOAD
    # Every example, since the review page picks one at random.
    for example in db_session.scalars(
        select(EvaluationExample).where(EvaluationExample.evaluation_id == evaluation.id)
    ):
        example.messages = [{"role": "user", "content": PAYLOAD}]
        example.outputs = {
            label: {**output, "answer": PAYLOAD} for label, output in example.outputs.items()
        }
    db_session.commit()
    return {
        "projects": "/projects",
        "project": f"/projects/{pid}",
        "dataset": f"/datasets/{dataset['id']}",
        "job": f"/jobs/{job['id']}",
        "new run": f"/projects/{pid}/runs/new",
        "version": f"/versions/{version.id}",
        "chat": chat,
        "evaluations": f"/projects/{pid}/evaluations",
        "evaluation": f"/evaluations/{evaluation.id}",
        "review": f"/evaluations/{evaluation.id}/review",
    }


# What each page waits for before it is judged: its charts drawn, its fragments loaded.
READY = {
    "dataset": "#length-histogram .main-svg",
    "job": "#loss-chart .main-svg",
    "evaluation": "#perplexity-chart .main-svg",
}


# The one thing the policy refuses on these pages, as it should: the Markdown answer's image
# from another host.
EXPECTED_VIOLATIONS = {"chat": ["img-src https://example.com/x.png"]}


def _open(page, url: str, name: str):  # type: ignore[no-untyped-def]
    response = page.goto(url)
    if name in READY:
        expect(page.locator(READY[name]).first).to_be_attached()
    page.wait_for_timeout(300)  # deferred scripts, htmx `load` triggers, violation events
    return response


def test_pages_load_under_the_policy_without_a_violation(browser, live_server, hostile) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="en-US")
    context.add_init_script(WATCH)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        pages = {**hostile, "models": "/models", "swagger": "/docs"}
        for name, path in pages.items():
            response = _open(page, f"{live_server}{path}", name)
            policy = response.headers["content-security-policy"]
            assert "script-src 'self';" in policy, (name, policy)
            violations = [" ".join(v.split()[:2]) for v in page.evaluate("window.__csp")]
            assert violations == EXPECTED_VIOLATIONS.get(name, []), (name, violations)
            assert errors == [], (name, errors)
        expect(page.locator(".opblock").first).to_be_visible()  # Swagger UI started

        # ReDoc renders too; the one thing refused is its sidebar logo from another host.
        page.goto(f"{live_server}/redoc")
        expect(page.locator("[data-section-id^='operation/']").first).to_be_attached()
        page.wait_for_timeout(300)
        violations = page.evaluate("window.__csp")
        assert all(v.startswith("img-src https://cdn.redoc.ly") for v in violations), violations
        assert errors == [], errors
    finally:
        context.close()


def test_user_strings_show_as_text_and_run_nothing(browser, live_server, hostile) -> None:  # type: ignore[no-untyped-def]
    # The policy would block the injected script anyway: switch it off to test the escaping.
    context = browser.new_context(locale="en-US", bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        for name, path in hostile.items():
            _open(page, f"{live_server}{path}", name)
            if name == "dataset":
                expect(page.locator("#dataset-rows")).to_contain_text(f"{PAYLOAD} 0")
            assert PAYLOAD in page.inner_text("body"), name
            state: dict[str, Any] = page.evaluate(
                """() => ({
                  xss: window.__xss,
                  images: document.querySelectorAll('img[src="x"]').length,
                  scripts: [...document.scripts].filter((s) => s.text.includes("__xss")).length,
                  links: document.querySelectorAll('a[href^="javascript:"]').length,
                })"""
            )
            assert state == {"xss": None, "images": 0, "scripts": 0, "links": 0}, (name, state)
        # The Markdown answer: its link lost the script URL, its HTML is text.
        page.goto(f"{live_server}{hostile['chat']}")
        answer = page.locator(".bubble-assistant .markdown")
        expect(answer).to_contain_text(PAYLOAD)
        expect(answer.locator("a")).to_have_count(0)
    finally:
        context.close()


def test_the_chat_form_resets_after_a_message_is_sent(browser, live_server, hostile) -> None:  # type: ignore[no-untyped-def]
    api = httpx.Client(base_url=live_server, timeout=30)
    project_path = hostile["project"]
    fresh = _form_post(api, f"{project_path}/chat", {"model": "base"}).headers["location"]
    context = browser.new_context(locale="en-US")
    context.add_init_script(WATCH)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{live_server}{fresh}")
        expect(page.locator("#chat-empty")).to_be_visible()
        page.fill("#chat-text", "Where is Tianmen Mountain?")
        # No worker here: the server refuses (503) and the question stays for another try.
        with page.expect_response(lambda r: r.url.endswith("/messages")) as sent:
            page.click("#send")
        assert sent.value.status == 503
        expect(page.locator("#chat-text")).to_have_value("Where is Tianmen Mountain?")
        expect(page.locator("#chat-empty")).to_be_visible()
        # A request that succeeds, as htmx reports it: the box empties and the note goes.
        page.evaluate(
            """() => {
              const form = document.getElementById("chat-form");
              htmx.trigger(form, "htmx:afterRequest", { elt: form, successful: true });
            }"""
        )
        expect(page.locator("#chat-text")).to_have_value("")
        expect(page.locator("#chat-empty")).to_have_count(0)
        assert page.evaluate("window.__csp") == []
    finally:
        context.close()
