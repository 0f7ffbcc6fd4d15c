"""/healthz and the header warning, against a real Redis and real Celery worker processes."""

from __future__ import annotations

import time

from tests.helpers.services import WorkerProcess, reset_app_caches


def test_healthz_reports_database_redis_and_worker(client, worker) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/healthz").json()
    assert body["database"]["ok"] is True
    assert body["redis"]["ok"] is True
    assert worker.pids <= {w["pid"] for w in body["workers"]["alive"]}
    assert {"train", "infer", "data", "export"} <= set(body["queues"])
    assert body["status"] == "ok"
    banner = client.get("/partials/status-banner")
    assert 'data-status="no-worker"' not in banner.text


def test_killing_the_worker_turns_the_warning_on(client, lonely_redis, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    banner = client.get("/partials/status-banner")
    assert 'data-status="no-worker"' in banner.text  # nobody serves this Redis yet

    proc = WorkerProcess(env=dict(os.environ), log_path=tmp_path / "w.log", queues="data")
    proc.start()
    try:
        assert 'data-status="no-worker"' not in client.get("/partials/status-banner").text
        assert client.get("/healthz").json()["workers"]["ok"] is True
        proc.kill()  # SIGKILL: the worker cannot remove its heartbeat
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if client.get("/healthz").json()["workers"]["ok"] is False:
                break
            time.sleep(0.5)
        assert client.get("/healthz").json()["workers"]["alive"] == []
        page = client.get("/projects")
        assert page.status_code == 200
        assert 'data-status="no-worker"' in client.get("/partials/status-banner").text
    finally:
        proc.stop()


def test_healthz_is_503_when_redis_is_down(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TUNELAB_REDIS_URL", "redis://127.0.0.1:1/0")
    reset_app_caches()
    try:
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["redis"]["ok"] is False
        assert 'data-status="down"' in client.get("/partials/status-banner").text
    finally:
        monkeypatch.undo()
        reset_app_caches()
