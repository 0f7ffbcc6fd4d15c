"""/healthz shows what `tunelab up` supervises: the state the supervisor publishes in Redis
(real Redis; the supervisor's children here are short real processes, not Tunelab's)."""

from __future__ import annotations

import subprocess
import sys
import time

from app.config import Settings
from app.supervisor import Child, Supervisor


def test_healthz_lists_children_and_a_worker_waiting_to_restart(client, lonely_redis) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json()["supervisors"] == []  # nothing runs `tunelab up` here

    supervisor = Supervisor(Settings(), host="127.0.0.1", port=0)
    supervisor._redis_url = lonely_redis
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    supervisor.start("worker-main", sleep, env={})
    # Its own process group, as the supervisor gives its children (stop_all signals groups).
    died = subprocess.Popen([sys.executable, "-c", "raise SystemExit(9)"], start_new_session=True)
    died.wait()
    crashed = Child("worker-train", lambda: died, proc=died, restarts=2, last_exit_code=-9)
    crashed.restart_due = time.monotonic() + 4
    supervisor.children["worker-train"] = crashed
    try:
        supervisor._publish_state()
        body = client.get("/healthz").json()
        (state,) = body["supervisors"]
        children = {child["name"]: child for child in state["children"]}
        main = supervisor.children["worker-main"].proc
        assert main is not None and children["worker-main"]["pid"] == main.pid
        assert children["worker-main"]["alive"] is True
        train = children["worker-train"]
        assert train["alive"] is False and train["pid"] is None
        assert train["restarts"] == 2 and train["last_exit_code"] == -9
        assert 0 < train["restart_in_s"] <= 4
        assert any(p.startswith("worker-train on ") and "code -9" in p for p in body["problems"])
    finally:
        supervisor._stopping = True
        supervisor.stop_all()  # also removes the published state
    assert client.get("/healthz").json()["supervisors"] == []
