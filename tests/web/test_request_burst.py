"""A burst of concurrent requests on a real `tunelab web`: every one is answered, none waits on
the database pool until it gives up.

bench/bench_load.py's first full run (50 job viewers, 50 page loads a second, 16 chats) got
503 "database unavailable" for most requests: every thread of the server's pool was a handler
waiting for a database connection, while the connections were held by requests whose session
`close()` waited for a free thread (a sync dependency's exit runs in that pool). Nothing moved
until the connection pool's 30 s timeout. Here 120 requests at once (twice the worker threads,
eight times the connections) must all succeed, well before that timeout would have fired.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.helpers.projects import project_with_rows
from tests.web.test_web_restart_streams import WebServer
from tests.workers.test_training_jobs import ROWS

pytestmark = pytest.mark.sqlite_only  # the server's thread and connection pools, not the SQL

BURST = 120


async def burst(base: str, paths: list[str]) -> list[int]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def get(path: str) -> int:
            if path.endswith("/events"):  # a viewer: the replay of a finished job, then `done`
                async with client.stream("GET", path) as response:
                    async for _ in response.aiter_lines():
                        pass
                    return response.status_code
            return (await client.get(path, headers={"Accept": "text/html"})).status_code

        return await asyncio.gather(*(get(paths[i % len(paths)]) for i in range(BURST)))


def test_a_burst_of_pages_and_viewers_is_answered(client, db_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from app.models import JobStatus, TrainingJob

    project, dataset = project_with_rows(client, ROWS, "burst")
    job = client.post(f"/api/projects/{project['id']}/jobs", json={"dataset_id": dataset["id"]})
    job_id = job.json()["id"]
    row = db_session.get(TrainingJob, job_id)
    row.status = JobStatus.CANCELLED  # finished: its events stream replays and ends
    db_session.commit()

    web = WebServer(tmp_path / "web.log")
    web.start()
    try:
        paths = [
            f"/projects/{project['id']}",
            f"/jobs/{job_id}",
            f"/api/jobs/{job_id}/events",
            "/projects",
            f"/projects/{project['id']}/runs/new",
            "/models",
        ]
        statuses = asyncio.run(burst(web.url, paths))
    finally:
        web.stop()
    log = (tmp_path / "web.log").read_text(errors="replace")
    assert statuses == [200] * BURST, (sorted(set(statuses)), log[-3000:])
    assert "QueuePool limit" not in log
