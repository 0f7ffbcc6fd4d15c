"""The heart of the product in a real browser: the Zhangjiajie demo set on SmolLM2 with the
quick-test preset trains to `succeeded` on this CPU while the loss chart grows point by point,
and the new model version appears. Takes a few minutes: it is a real training run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

DEMO = Path(__file__).resolve().parents[2] / "examples" / "zhangjiajie" / "train.json"


def chart_points(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.locator("#loss-chart").get_attribute("data-points") or 0)


def assert_chart_grows_live(page, timeout_s: float, poll_s: float) -> None:  # type: ignore[no-untyped-def]
    """The chart shows at least three different point counts while the job is running."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len({n for n in seen if n > 0}) < 3:
        if page.locator("#job-status[data-status=running]").count():
            seen.append(chart_points(page))
        time.sleep(poll_s)
    assert len({n for n in seen if n > 0}) >= 3, f"chart did not grow live: {seen}"


def assert_reload_keeps_curve(page) -> None:  # type: ignore[no-untyped-def]
    """A reload mid-run shows the whole curve so far at once."""
    before = chart_points(page)
    page.reload()
    # Polled from Python: wait_for_function evaluates its string in the page, which the
    # Content-Security-Policy (no eval) refuses.
    deadline = time.monotonic() + 5
    while chart_points(page) < before:
        assert time.monotonic() < deadline, "the reloaded chart lost points"
        page.wait_for_timeout(100)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 7.5-15 min of training: past the suite's 600 s per-test limit
@pytest.mark.skipif(
    os.environ.get("TUNELAB_RUN_SLOW") != "1",
    reason="a real SmolLM2 training run takes 6-20 minutes on 2 cores; set TUNELAB_RUN_SLOW=1",
)
def test_demo_set_trains_live_to_a_new_version(page, live_server, worker) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/projects")
    page.fill("#f-name", "张家界导游")
    page.click("#project-form button[type=submit]")
    expect(page.locator("#project-title")).to_have_text("张家界导游")
    page.set_input_files("#upload-file", str(DEMO))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#dataset-title")).to_have_text("train.json")
    # The time estimate needs the token statistics the worker computes after the upload.
    expect(page.locator("#dataset-stats[data-status=ready]")).to_be_visible(timeout=180_000)
    page.click("nav.breadcrumb a:nth-child(2)")
    page.click("#new-run")

    # The quick-test preset; QLoRA is offered only with a CUDA worker, and says why.
    expect(page.locator("#f-method option[value=qlora]")).to_be_disabled()
    expect(page.locator("#qlora-reason")).to_be_visible()
    expect(page.locator("#est-steps")).to_have_text("51")  # 202 training rows / batch 4, 1 epoch
    # The estimate comes from this machine's training worker (its measured throughput).
    expect(page.locator("#est-basis")).to_contain_text("train")
    page.click("#start-training")
    started = time.monotonic()
    expect(page.locator("#job-title")).to_be_visible()
    job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    estimate_s = httpx.get(f"{live_server}/api/jobs/{job_id}", timeout=10).json()["estimate"][
        "seconds"
    ]

    # Live: the chart gains points while the job is still running.
    expect(page.locator("#job-status[data-status=running]")).to_be_visible(timeout=180_000)
    assert_chart_grows_live(page, timeout_s=420, poll_s=1)
    assert_reload_keeps_curve(page)

    # Machines differ (an AVX2-only CPU trains in fp32 at less than half a bf16 CPU's speed), so
    # the bar is the promise the form made on this machine: within 35 % of the estimate.
    remaining_ms = max(1.0, 1.35 * estimate_s + 180 - (time.monotonic() - started)) * 1000
    expect(page.locator("#job-status[data-status=succeeded]")).to_be_visible(timeout=remaining_ms)
    took_s = time.monotonic() - started
    print(f"quick preset on SmolLM2: {took_s / 60:.1f} min, estimated {estimate_s / 60:.1f} min")
    assert 0.65 <= took_s / estimate_s <= 1.35, (took_s, estimate_s)
    expect(page.locator("#job-version")).to_contain_text("v1")
    # The curve it drew goes down: the plotted raw losses, last ten against first ten.
    losses = page.evaluate("document.getElementById('loss-chart').data[0].y")
    assert len(losses) == 51, len(losses)
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10]), losses
    page.click("nav.breadcrumb a:nth-child(2)")
    expect(page.locator("#version-table")).to_contain_text(":v1")


def test_live_chart_on_a_tiny_model(page, live_server, worker, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    """The same page with the tiny random model: the chart grows while the job runs, a reload
    keeps the curve, and the finished run appears as a version."""
    import json

    api = httpx.Client(base_url=live_server, timeout=30)
    model = api.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = api.post(
        "/api/projects", json={"name": "tiny live", "base_model": model["id"]}
    ).json()
    rows = [{"instruction": f"景点 {i}？", "output": f"在武陵源 {i}。"} for i in range(40)]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = api.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    page.goto(f"{live_server}/projects/{project['id']}/runs/new")
    page.select_option("#f-dataset_id", str(dataset["id"]))
    page.fill("#f-max_length", "64")
    page.fill("#f-epochs", "30")
    page.fill("#f-batch_size", "2")
    page.click("#start-training")
    expect(page.locator("#job-status[data-status=running]")).to_be_visible(timeout=60_000)
    assert_chart_grows_live(page, timeout_s=120, poll_s=0.3)
    assert_reload_keeps_curve(page)
    page.click("#stop-save")
    expect(page.locator("#job-status[data-status=succeeded]")).to_be_visible(timeout=60_000)
    expect(page.locator("#job-version")).to_contain_text("v1")
