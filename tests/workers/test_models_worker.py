"""Model preparation on a real worker: an offline hub id fails with a clear message, and the
built-in SmolLM2 is converted with progress into the cached folder."""

from __future__ import annotations

import time

import pytest


def wait_for(predicate, timeout: float = 120, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def test_offline_hub_id_fails_with_a_clear_message(client, worker) -> None:  # type: ignore[no-untyped-def]
    # HF_HUB_OFFLINE=1 for the worker (tests never reach a hub): this is what users see offline.
    response = client.post("/api/models", json={"hub_id": "Qwen/Qwen2.5-0.5B-Instruct"})
    assert response.status_code == 201
    assert response.json()["status"] == "downloading"

    def failed():  # type: ignore[no-untyped-def]
        models = client.get("/api/models").json()["data"]
        row = next(m for m in models if m["id"] == "hub:Qwen/Qwen2.5-0.5B-Instruct")
        return row if row["status"] == "failed" else None

    row = wait_for(failed, timeout=60)
    assert row["status_reason_code"] == "hub_unreachable"
    assert "Cannot reach the model hub" in row["status_reason"]  # English, for the API
    assert "register that folder" in row["status_reason"]
    assert "Traceback" not in row["status_reason"]
    # The models page gives the reason in the reader's language.
    zh = client.get("/models", headers={"Accept-Language": "zh-CN"}).text
    assert "无法连接模型中心" in zh and "注册该文件夹" in zh
    en = client.get("/models", headers={"Accept-Language": "en"}).text
    assert "Cannot reach the model hub" in en


@pytest.mark.slow
def test_builtin_conversion_reports_progress(client, worker) -> None:  # type: ignore[no-untyped-def]
    model_id = "smollm2-135m-instruct"
    status = next(m for m in client.get("/api/models").json()["data"] if m["id"] == model_id)
    if status["status"] == "ready":
        pytest.skip("already converted in this data dir")
    started = client.post("/api/models/prepare", json={"id": model_id})
    assert started.status_code == 202
    states = set()

    def done():  # type: ignore[no-untyped-def]
        progress = client.get("/api/models/progress", params={"id": model_id}).json()
        states.add(progress["state"])
        assert progress["state"] != "failed", progress["message"]
        return progress["state"] == "done"

    wait_for(done, timeout=240, interval=0.3)
    assert "running" in states
    status = next(m for m in client.get("/api/models").json()["data"] if m["id"] == model_id)
    assert status["status"] == "ready"
    # The page's progress partial renders the finished state.
    assert "Ready" in client.get("/models/progress", params={"id": model_id}).text
