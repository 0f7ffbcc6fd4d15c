"""An export whose worker dies is failed with the reason, not left "running" for ever.

Exports run in the main worker's thread pool, so a crash there (SIGKILL, a lost machine) takes
the worker with it and nothing in it records why. The export row carries a heartbeat while the
task runs, and the web's reaper fails a running export whose beat stopped, as it does for
training jobs and evaluations. The worker is real; the test kills its whole process group in the
middle of a GGUF export (the longest format: merge, convert, quantize, verify).
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from app.services import exports as export_states
from tests.helpers.services import WorkerProcess
from tests.workers.test_exports import _gguf_tools_or_skip
from tests.workers.test_exports import version as version  # noqa: F401 - the fixture

HEARTBEAT_S = 0.5
LOST_AFTER_S = 4 * HEARTBEAT_S
FORMAT = "gguf-q4_k_m"


def _export_id(db_session, version_id: int, fmt: str) -> int:  # type: ignore[no-untyped-def]
    """The row's id (the API names an export by its version and format)."""
    from sqlalchemy import select

    from app.models import Export

    query = select(Export.id).where(Export.version_id == version_id, Export.format == fmt)
    return int(db_session.scalar(query))


def _row(client, version_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    rows = client.get(f"/api/versions/{version_id}/exports").json()["data"]
    return next(r for r in rows if r["format"] == FORMAT)


def test_an_export_whose_worker_was_killed_is_failed_and_can_be_asked_again(
    client, version, platform_env, db_session, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _gguf_tools_or_skip()
    env = dict(os.environ, **platform_env, TUNELAB_JOB_HEARTBEAT_S=str(HEARTBEAT_S))
    worker = WorkerProcess(env=env, log_path=tmp_path / "export.log", queues="export")
    worker.start()
    try:
        response = client.post(f"/api/versions/{version['id']}/exports", json={"format": FORMAT})
        assert response.status_code == 202, response.text
        export_id = _export_id(db_session, version["id"], FORMAT)
        deadline = time.monotonic() + 60
        while _row(client, version["id"])["status"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _row(client, version["id"])["status"] == "running"

        # Alive, the export keeps its heartbeat fresh: a reaper with a short timeout spares it.
        time.sleep(2 * LOST_AFTER_S)
        assert export_states.reap_lost(db_session, LOST_AFTER_S) == []
        assert _row(client, version["id"])["status"] == "running", "export ended too soon"

        worker.kill()
    finally:
        worker.stop()

    time.sleep(2 * LOST_AFTER_S)
    assert export_states.reap_lost(db_session, LOST_AFTER_S) == [export_id]
    row = _row(client, version["id"])
    assert row["status"] == "failed"
    assert (row["error_code"], row["error_params"]) == ("export_worker_lost", {"seconds": 2})
    page = client.get(f"/versions/{version['id']}", headers={"Accept-Language": "zh-CN"}).text
    assert "工作进程已无响应（2 秒内没有心跳）" in page and "Request the export again" not in page

    # Nothing blocks a new request for the format.
    again = client.post(f"/api/versions/{version['id']}/exports", json={"format": FORMAT})
    assert again.status_code == 202 and again.json()["status"] == "queued"


@pytest.mark.parametrize("age_s", [30, None])
def test_the_reaper_takes_stale_running_exports_only(
    client, version, db_session, age_s: int | None
) -> None:  # type: ignore[no-untyped-def]
    """A row claimed before heartbeats existed (heartbeat_at NULL) goes by its start time."""
    from datetime import timedelta

    from sqlalchemy import update

    from app.models import Export

    client.post(f"/api/versions/{version['id']}/exports", json={"format": "adapter"})
    export_id = _export_id(db_session, version["id"], "adapter")
    assert export_states.claim(db_session, export_id)
    assert export_states.reap_lost(db_session, 10) == []  # just claimed: fresh
    long_ago = export_states.now() - timedelta(seconds=30)
    values = {"started_at": long_ago, "heartbeat_at": None if age_s is None else long_ago}
    db_session.execute(update(Export).where(Export.id == export_id).values(**values))
    db_session.commit()
    assert export_states.reap_lost(db_session, 10) == [export_id]
    assert export_states.reap_lost(db_session, 10) == []  # failed once, not again
