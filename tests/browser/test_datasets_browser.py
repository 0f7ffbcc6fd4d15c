"""Datasets in a real browser: a file full of mistakes gets a report and nothing is stored until
the user decides; the demo set gets token statistics and a histogram from a real worker."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
MISTAKES = ROOT / "tests" / "data" / "datasets_mistakes.jsonl"
DEMO = ROOT / "examples" / "zhangjiajie" / "train.json"


def new_project(page, live_server, name: str) -> str:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/projects")
    page.fill("#f-name", name)
    page.click("#project-form button[type=submit]")
    expect(page.locator("#project-title")).to_have_text(name)
    return page.url


def test_mistakes_report_then_keep_valid_rows(page, live_server) -> None:  # type: ignore[no-untyped-def]
    project_url = new_project(page, live_server, "Mistakes")
    page.set_input_files("#upload-file", str(MISTAKES))
    page.click("#upload-form button[type=submit]")
    report = page.locator("#upload-report")
    expect(report).to_be_visible()
    codes = set(
        page.locator("#issue-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.code)")
    )
    assert {
        "invalid_json",
        "not_an_object",
        "missing_field",
        "empty_field",
        "wrong_type",
        "unknown_role",
        "turn_order",
        "last_turn_not_assistant",
        "mixed_format",
        "duplicate_row",
    } <= codes, codes
    # Each problem names its row and field.
    first = page.locator("#issue-table tbody tr[data-code=missing_field]").first
    expect(first.locator("td").nth(0)).to_have_text("5")
    expect(first.locator("td").nth(1)).to_contain_text("messages[0].content")

    # Nothing was stored: the project still has no dataset.
    page.goto(project_url)
    expect(page.locator("#datasets-empty")).to_be_visible()

    page.set_input_files("#upload-file", str(MISTAKES))
    page.click("#upload-form button[type=submit]")
    page.click("#keep-valid")
    expect(page.locator("#dataset-title")).to_have_text("datasets_mistakes.jsonl")
    expect(page.locator("a[href$='/files/dropped']")).to_be_visible()


def test_demo_set_statistics_and_histogram(page, live_server, worker) -> None:  # type: ignore[no-untyped-def]
    new_project(page, live_server, "Zhangjiajie")  # default base model: SmolLM2
    page.set_input_files("#upload-file", str(DEMO))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#dataset-title")).to_have_text("train.json")
    expect(page.locator("#dataset-rows")).to_contain_text("袁家界")

    # The first statistics convert SmolLM2 from its GGUF file (~20 s on this CPU).
    stats = page.locator("#dataset-stats[data-status=ready]")
    expect(stats).to_be_visible(timeout=180_000)
    expect(stats.locator("dl.stats")).to_contain_text("225")
    expect(page.locator("#length-histogram .main-svg").first).to_be_visible()
    bars = page.locator("#length-histogram .bars .point")
    assert bars.count() > 3

    page.click("#preview-button")
    expect(page.locator("#template-preview[data-status=ready] mark.loss").first).to_be_visible(
        timeout=60_000
    )
