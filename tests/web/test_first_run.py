"""The README's first run, exactly as a newcomer does it: a fresh clone, no settings, `tunelab up`.

`git clone` of this repository into a temporary folder; no TUNELAB_* variable in the
environment; the clone as the working directory; the venv's `tunelab` console script (the venv
is reused, as CI reuses its install) run as `tunelab up` with no option at all, so the defaults
apply: port 8000 and `./data`. Both workers must be alive within 60 s, a project is created
through the API, Ctrl-C stops every process it started (checked by pid), and a second
`tunelab up` in the same clone still has the project.

Port 8000 is the README's default, so when another program holds it this test is skipped (it
cannot follow the README there), not failed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.supervisor import port_in_use
from tests.helpers.up import descendants, stop_up, wait_gone, wait_healthy, without_tunelab_settings

REPO = Path(__file__).resolve().parents[2]
README_URL = "http://127.0.0.1:8000"
HEALTHY_WITHIN_S = 60


@contextmanager
def tunelab_up(clone: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`tunelab up` in the clone, as typed after the README; stopped with Ctrl-C (SIGINT), then
    every process it started must be gone."""
    script = Path(sys.executable).parent / "tunelab"
    assert script.exists(), f"the venv has no `tunelab` console script at {script}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(script), "up"],
            cwd=clone,
            env=without_tunelab_settings(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_healthy(8000, proc, timeout=HEALTHY_WITHIN_S)
        except AssertionError as exc:
            tail = log.read_text(errors="replace")[-3000:]
            if proc.returncode == 2 and "port 8000 on 127.0.0.1 is already in use" in tail:
                pytest.skip("port 8000 was taken by another program while the test started")
            raise AssertionError(f"{exc}; the end of its output:\n{tail}") from None
        yield proc
        children = descendants(proc.pid)
        assert len(children) >= 4  # Redis, web, two workers (and their pool processes)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert wait_gone(children) == [], "Ctrl-C left Redis, a worker or the web running"
    finally:
        stop_up(proc)


def test_fresh_clone_first_run_with_the_readme_defaults(tmp_path: Path) -> None:
    if port_in_use("127.0.0.1", 8000):
        pytest.skip("port 8000, the README's default, is in use by another program here")
    clone = tmp_path / "tunelab"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    log = tmp_path / "up.log"

    with tunelab_up(clone, log):
        workers = httpx.get(f"{README_URL}/healthz", timeout=5).json()["workers"]["alive"]
        queues = sorted(sorted(worker["queues"]) for worker in workers)
        assert queues == [["data", "export", "infer"], ["eval", "train"]]
        created = httpx.post(f"{README_URL}/api/projects", json={"name": "first"}, timeout=10)
        assert created.status_code == 201, created.text

    # Everything lives under the clone's ./data, the default data dir.
    assert (clone / "data" / "tunelab.db").is_file()
    assert (clone / "data" / "redis" / "redis.log").is_file()

    with tunelab_up(clone, log):
        projects = httpx.get(f"{README_URL}/api/projects", timeout=10).json()
        assert [p["name"] for p in projects["data"]] == ["first"]
