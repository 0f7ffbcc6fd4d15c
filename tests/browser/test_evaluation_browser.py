"""The evaluation report and the blind review in a real browser, on evaluations written straight
to the database (tests/helpers/evaluations.py): live progress over SSE, the charts, sorting the
per-example table worst-first, the CSV and JSONL downloads, and blind votes to win rates."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.helpers.evaluations import add_versions, insert_evaluation


@pytest.fixture
def project(live_server, db_session) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    api = httpx.Client(base_url=live_server, timeout=30)
    project = api.post("/api/projects", json={"name": "eval browser"}).json()
    add_versions(db_session, project["id"])
    return project


def positions(page) -> list[int]:  # type: ignore[no-untyped-def]
    rows = page.locator("#examples-table tbody tr")
    return [int(rows.nth(i).get_attribute("data-position")) for i in range(rows.count())]


def download(page, selector: str) -> str:  # type: ignore[no-untyped-def]
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_text(encoding="utf-8-sig")


def test_live_progress_then_report_on_the_final_status(
    page, live_server, project, db_session
) -> None:  # type: ignore[no-untyped-def]
    from app import events
    from app.event_types import EvaluationProgress, JobStatusChanged
    from app.models import JobStatus
    from app.redis_client import get_redis
    from app.redis_keys import evaluation_stream_key

    evaluation = insert_evaluation(db_session, project["id"])
    evaluation.status = JobStatus.RUNNING
    db_session.commit()
    key = evaluation_stream_key(evaluation.id)

    page.goto(f"{live_server}/evaluations/{evaluation.id}")
    expect(page.locator("#cancel-evaluation")).to_be_visible()
    events.publish(get_redis(), key, EvaluationProgress(phase="generation", done=5, total=20))
    expect(page.locator("#evaluation-progress-text")).to_have_text("5 / 20")
    expect(page.locator("#evaluation-phase")).to_have_text("Generating answers")
    expect(page.locator("#evaluation-progress-bar")).to_have_attribute("style", re.compile("25%"))

    evaluation.status = JobStatus.SUCCEEDED
    db_session.commit()
    events.publish(get_redis(), key, JobStatusChanged(status=JobStatus.SUCCEEDED))
    expect(page.locator("#results-table")).to_be_visible()  # the page reloaded
    expect(page.locator("#cancel-evaluation")).to_have_count(0)


def test_report_sorts_worst_first_and_downloads(page, live_server, project, db_session) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"])
    page.goto(f"{live_server}/evaluations/{evaluation.id}")
    expect(page.locator('#results-table tr[data-version="v1"] td.best .star')).to_have_count(3)
    expect(page.locator("#perplexity-chart .main-svg").first).to_be_attached()
    expect(page.locator("#overlap-chart .main-svg").first).to_be_attached()
    assert positions(page) == [0, 1, 2, 3]

    page.select_option("#examples-sort", "v1:perplexity")
    expect(page.locator("#examples-table tbody tr").first).to_have_attribute("data-position", "2")
    assert positions(page) == [2, 1, 3, 0]
    cells = page.locator('#examples-table td[data-version="v1"]')
    values = [float(cells.nth(i).get_attribute("data-perplexity")) for i in range(cells.count())]
    assert values == sorted(values, reverse=True)  # highest perplexity (worst) first

    page.select_option("#examples-sort", "v1:rougeL")
    expect(page.locator("#examples-table tbody tr").first).to_have_attribute("data-position", "3")
    assert positions(page) == [3, 1, 2, 0]  # lowest ROUGE-L (worst) first

    # A long answer is clamped until expanded.
    first_long = page.locator('tr[data-position="0"] td[data-version="v1"] details.clamp')
    expect(first_long.locator(".clamp-full")).to_be_hidden()
    first_long.locator("summary").click()
    expect(first_long.locator(".clamp-full")).to_be_visible()

    table = list(csv.DictReader(io.StringIO(download(page, "#download-csv"))))
    assert [int(r["position"]) for r in table] == [3, 1, 2, 0]  # in the order on screen
    assert table[0]["prompt"] == "问题 3：天门山在哪里？" and table[0]["reference"] == "参考答案 3"
    assert {"base_answer", "v1_perplexity", "v2_rougeL"} <= set(table[0])
    records = [json.loads(line) for line in download(page, "#download-jsonl").splitlines()]
    assert [r["position"] for r in records] == [3, 1, 2, 0]
    assert records[0]["outputs"]["v1"]["rougeL"] == 10.0


def test_blind_review_records_choices_and_shows_win_rates(
    page, live_server, project, db_session
) -> None:  # type: ignore[no-untyped-def]
    evaluation = insert_evaluation(db_session, project["id"], versions=["base", "v1"])
    page.goto(f"{live_server}/evaluations/{evaluation.id}")
    page.click("#open-review")
    expect(page.locator("#review-progress")).to_have_text("0 of 4 judged")
    expect(page.locator("#answer-a h2")).to_have_text("Answer A")
    expect(page.locator("#review-reference")).to_be_hidden()
    page.click("text=Show the reference answer")
    expect(page.locator("#review-reference")).to_be_visible()

    wins = {"base": 0, "v1": 0, "tie": 0}
    for n, action in enumerate(["a", "tie", "key-t", "b"]):
        left = page.locator('input[name="left"]').input_value()
        right = page.locator('input[name="right"]').input_value()
        if action == "a":
            page.click("#answer-a .scores-box summary")
            page.select_option("#score-left-relevance", "5")
            page.click("#vote-a")
            wins[left] += 1
        elif action == "b":
            page.click("#vote-b")
            wins[right] += 1
        elif action == "tie":
            page.click("#vote-tie")
            wins["tie"] += 1
        else:  # the keyboard shortcut
            page.locator("body").press("t")
            wins["tie"] += 1
        expect(page.locator("#review-progress")).to_have_text(f"{n + 1} of 4 judged")

    expect(page.locator("#review-done")).to_be_visible()
    row = page.locator('#review-tally tr[data-pair="base-v1"]')
    expect(row).to_contain_text(f"{wins['base']} : {wins['tie']} : {wins['v1']}")
    base_rate = round(100 * (wins["base"] + wins["tie"] / 2) / 4)
    expect(row.locator('[data-side="a"]')).to_have_text(f"base {base_rate} %")
    expect(row.locator('[data-side="b"]')).to_have_text(f"v1 {100 - base_rate} %")
    expect(row).to_contain_text("5.0")  # the relevance score given once

    page.click("text=Back to the report")
    expect(page.locator("#review-tally")).to_be_visible()
