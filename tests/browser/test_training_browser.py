"""The heart of the product in a real browser: the Zhangjiajie demo set on SmolLM2 with the
quick-test preset trains to `succeeded` on this CPU while the loss chart grows point by point,
and the new model version appears. Takes a few minutes: it is a real training run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

DEMO = Path(__file__).resolve().parents[2] / "examples" / "zhangjiajie" / "train.json"


def chart_points(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.locator("#loss-chart").get_attribute("data-points") or 0)


@pytest.mark.slow
def test_demo_set_trains_live_to_a_new_version(page, live_server, worker) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/projects")
    page.fill("#f-name", "张家界导游")
    page.click("#project-form button[type=submit]")
    expect(page.locator("#project-title")).to_have_text("张家界导游")
    page.set_input_files("#upload-file", str(DEMO))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#dataset-title")).to_have_text("train.json")
    page.click("nav.breadcrumb a:nth-child(2)")
    page.click("#new-run")

    # The quick-test preset; QLoRA is offered only with a CUDA worker, and says why.
    expect(page.locator("#f-method option[value=qlora]")).to_be_disabled()
    expect(page.locator("#qlora-reason")).to_be_visible()
    expect(page.locator("#est-steps")).to_have_text("51")  # 202 training rows / batch 4, 1 epoch
    page.click("#start-training")
    expect(page.locator("#job-title")).to_be_visible()

    # Live: the chart gains points while the job is still running.
    expect(page.locator("#job-status[data-status=running]")).to_be_visible(timeout=180_000)
    seen = []
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and len({n for n in seen if n > 0}) < 3:
        if page.locator("#job-status[data-status=running]").count():
            seen.append(chart_points(page))
        time.sleep(1)
    assert len({n for n in seen if n > 0}) >= 3, f"chart did not grow live: {seen}"

    # A reload mid-run shows the whole curve so far at once.
    before = chart_points(page)
    page.reload()
    page.wait_for_function(
        f"Number(document.getElementById('loss-chart').dataset.points) >= {before}", timeout=5_000
    )

    expect(page.locator("#job-status[data-status=succeeded]")).to_be_visible(timeout=600_000)
    expect(page.locator("#job-version")).to_contain_text("v1")
    page.click("nav.breadcrumb a:nth-child(2)")
    expect(page.locator("#version-table")).to_contain_text(":v1")
