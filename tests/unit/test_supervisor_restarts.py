"""The supervisor's restart policy: backoff while a child keeps dying, the rest left running,
and a dead web server stopping everything. Real (tiny) child processes; no Redis needed."""

from __future__ import annotations

import sys
import threading
import time

from app.config import Settings
from app.supervisor import (
    RESTART_MAX_S,
    RESTART_MIN_S,
    STABLE_AFTER_S,
    Supervisor,
    restart_delay,
)


def test_backoff_doubles_up_to_a_cap_and_resets_after_a_stable_run() -> None:
    delays, delay = [], 0.0
    for _ in range(8):  # a child that dies right after each start
        delay = restart_delay(delay, uptime_s=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert (RESTART_MIN_S, RESTART_MAX_S) == (1, 30)
    # One that ran a while before dying is not crash-looping: the shortest delay again.
    assert restart_delay(RESTART_MAX_S, uptime_s=STABLE_AFTER_S) == RESTART_MIN_S
    assert restart_delay(4, uptime_s=STABLE_AFTER_S - 1) == 8


def test_a_crashing_worker_is_restarted_and_a_dead_web_stops_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    supervisor = Supervisor(Settings(data_dir=tmp_path), host="127.0.0.1", port=0)
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    supervisor.start("worker-crashy", crash, env={})
    supervisor.start("worker-steady", sleep, env={})
    supervisor.start("web", sleep, env={}, restart=False)
    steady, web = supervisor.children["worker-steady"].proc, supervisor.children["web"].proc
    result: list[int] = []
    watcher = threading.Thread(target=lambda: result.append(supervisor._watch()))
    watcher.start()
    try:
        crashy = supervisor.children["worker-crashy"]
        deadline = time.monotonic() + 30
        while crashy.restarts < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Started again after 1 s, then 2 s; now waiting 4 s before the third start.
        assert crashy.restarts >= 2 and crashy.last_exit_code == 3
        assert crashy.delay_s >= 2 * RESTART_MIN_S
        assert steady is not None and steady.poll() is None  # the others keep running
        assert supervisor.children["worker-steady"].restarts == 0
        assert web is not None and web.poll() is None

        web.kill()
        watcher.join(10)
        assert result == [1]  # no web: stop everything
    finally:
        supervisor._stopping = True
        watcher.join(10)
        supervisor.stop_all()
    assert steady.poll() is not None
