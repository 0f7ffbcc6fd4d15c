"""Take the README's screenshots: start `tunelab up` on a fresh data dir, fill in some state
through the API, and photograph the main pages with Debian's headless Chromium. The last two
come from a real quick-preset training run on the demo set (a few minutes on a CPU): its job
page while the loss chart grows, then a chat comparing the new version with the base model.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
PORT = int(os.environ.get("SCREENSHOT_PORT", "8765"))
BASE = f"http://127.0.0.1:{PORT}"


def wait_up(proc: subprocess.Popen[bytes]) -> None:
    for _ in range(240):
        if proc.poll() is not None:
            raise SystemExit("tunelab up exited")
        try:
            if httpx.get(f"{BASE}/healthz", timeout=2).json()["workers"]["ok"]:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise SystemExit("tunelab up did not start")


def seed() -> dict[str, int]:
    api = httpx.Client(base_url=BASE, timeout=30)
    guide = api.post(
        "/api/projects",
        json={"name": "张家界导游 Zhangjiajie guide", "description": "Travel answers in Chinese"},
    ).json()
    api.post("/api/projects", json={"name": "Contract clauses", "description": "NDA review"})
    demo = ROOT / "examples" / "zhangjiajie" / "train.json"
    dataset = api.post(
        f"/api/projects/{guide['id']}/datasets", files={"file": ("train.json", demo.read_bytes())}
    ).json()
    for _ in range(300):  # the first statistics convert SmolLM2 from its GGUF file
        if api.get(f"/api/datasets/{dataset['id']}").json()["stats_status"] in ("ready", "failed"):
            break
        time.sleep(0.5)
    return {"project": guide["id"], "dataset": dataset["id"]}


def shoot(ids: dict[str, int]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    pages = {
        "projects": "/projects",
        "project": f"/projects/{ids['project']}",
        "models": "/models",
        "dataset": f"/datasets/{ids['dataset']}",
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800}, locale="en-US")
        for name, path in pages.items():
            page.goto(BASE + path)
            page.wait_for_timeout(800)
            if name == "dataset":
                page.click("#preview-button")
                page.wait_for_selector("#template-preview[data-status=ready]", timeout=60_000)
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
        # An upload with mistakes: the report the user sees before anything is stored.
        page.goto(f"{BASE}/projects/{ids['project']}")
        mistakes = ROOT / "tests" / "data" / "datasets_mistakes.jsonl"
        page.set_input_files("#upload-file", str(mistakes))
        page.click("#upload-form button[type=submit]")
        page.wait_for_selector("#upload-report")
        page.locator("#datasets-section").screenshot(path=str(OUT / "upload-report.png"))
        shoot_training(page, ids)
        browser.close()


def shoot_training(page, ids: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    api = httpx.Client(base_url=BASE, timeout=30)
    job = api.post(
        f"/api/projects/{ids['project']}/jobs",
        json={"dataset_id": ids["dataset"], "preset": "quick"},
    ).json()
    page.goto(f"{BASE}/jobs/{job['id']}")
    page.wait_for_function(
        "Number(document.getElementById('loss-chart').dataset.points) >= 20", timeout=900_000
    )
    page.wait_for_timeout(500)
    page.screenshot(path=str(OUT / "job.png"), full_page=True)
    page.wait_for_selector("#job-status[data-status=succeeded]", timeout=900_000)
    # Compare the new version with the base model on one question.
    page.goto(f"{BASE}/projects/{ids['project']}/chat")
    page.click("#new-chat")
    page.fill("#chat-text", "张家界国家森林公园有什么好玩的？")
    page.click("#send")
    page.wait_for_function(
        "document.querySelectorAll('.answer-stats').length >= 2", timeout=300_000
    )
    page.wait_for_timeout(500)
    page.screenshot(path=str(OUT / "chat.png"), full_page=True)
    shoot_evaluation(page, ids)


def shoot_evaluation(page, ids: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """Base vs v1 on the held-out file, then the report and the blind review."""
    api = httpx.Client(base_url=BASE, timeout=30)
    held_out = ROOT / "examples" / "zhangjiajie" / "heldout.json"
    dataset = api.post(
        f"/api/projects/{ids['project']}/datasets",
        files={"file": ("heldout.json", held_out.read_bytes())},
    ).json()
    evaluation = api.post(
        "/api/evaluations",
        json={
            "project_id": ids["project"],
            "dataset_id": dataset["id"],
            "max_new_tokens": 128,
            "include_general": True,
        },
    ).json()
    page.goto(f"{BASE}/evaluations/{evaluation['id']}")
    page.wait_for_selector(
        "#evaluation-status[data-status=succeeded]", state="attached", timeout=1_800_000
    )
    page.wait_for_timeout(1500)
    # The scores, charts and methods, and the first examples: the whole table is 40 rows long.
    clip = {"x": 0, "y": 0, "width": 1280, "height": 1900}
    page.screenshot(path=str(OUT / "evaluation.png"), full_page=True, clip=clip)
    page.goto(f"{BASE}/evaluations/{evaluation['id']}/review")
    for _ in range(3):
        page.click("#vote-a")
        page.wait_for_timeout(600)
    page.screenshot(path=str(OUT / "review.png"), full_page=True)


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="tunelab-shots-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")}
    env["TUNELAB_DATA_DIR"] = data_dir
    tunelab = Path(sys.executable).parent / "tunelab"
    proc = subprocess.Popen([str(tunelab), "up", "--port", str(PORT)], env=env)
    try:
        wait_up(proc)
        shoot(seed())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


if __name__ == "__main__":
    main()
