"""A user creates, renames and deletes a project in a real browser."""

from __future__ import annotations

from playwright.sync_api import expect


def test_create_rename_delete_project(page, live_server, worker) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_server}/projects")
    expect(page.locator("#project-list-empty")).to_be_visible()

    # A bad submit shows the error next to the field and keeps the form.
    page.fill("#f-name", "   ")
    page.click("#project-form button[type=submit]")
    expect(page.locator("#f-name-error")).to_contain_text("cannot be empty")

    page.fill("#f-name", "Zhangjiajie guide")
    page.fill("#f-description", "Travel answers for 张家界")
    page.click("#project-form button[type=submit]")
    expect(page.locator("#project-title")).to_have_text("Zhangjiajie guide")
    expect(page.locator("#datasets-section")).to_contain_text("No dataset yet")

    page.goto(f"{live_server}/projects")
    expect(page.locator(".project-list")).to_contain_text("Zhangjiajie guide")

    page.goto(f"{live_server}/projects")
    page.click("text=Zhangjiajie guide")
    page.click("summary")
    page.fill("#project-settings #f-name", "张家界导游")
    page.click("#project-settings button[type=submit]")
    expect(page.locator("#project-title")).to_have_text("张家界导游")

    page.click("summary")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-project")
    expect(page).to_have_url(f"{live_server}/projects")
    expect(page.locator("#project-list-empty")).to_be_visible()


def test_header_warns_when_the_worker_dies(page, live_server, lonely_redis, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from tests.helpers.services import WorkerProcess

    worker = WorkerProcess(env=dict(os.environ), log_path=tmp_path / "w.log", queues="data")
    worker.start()
    try:
        page.goto(f"{live_server}/projects")
        banner = page.locator("#status-banner [data-status=no-worker]")
        page.wait_for_timeout(1500)  # the banner loads right after the page
        expect(banner).to_have_count(0)
        worker.kill()
        # Heartbeat TTL is 3 s here; the header polls every 5 s.
        expect(banner).to_be_visible(timeout=20_000)
        expect(banner).to_contain_text("No worker is running")
    finally:
        worker.stop()
