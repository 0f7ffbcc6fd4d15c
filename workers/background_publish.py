"""Publishing a run's checkpoints to the artifact store while it trains.

A checkpoint only saves a run from a lost machine if it is somewhere else too: with object
storage (app/artifacts.py) the folder is uploaded after each save, so a run whose machine dies
resumes on another from its newest published checkpoint rather than from step 0. The upload
runs in a thread so the training does not wait on the network; requests made while one upload
runs fold into one more pass over the folder as it then stands (only the newest state matters,
and unchanged files are not sent again). With the local store nothing travels and no thread
starts.

A pass can fail, e.g. when a checkpoint older than the newest two is pruned while it uploads
(workers/training/checkpoint.py): it is logged, and the next checkpoint, or the publish at the
run's end, sends the folder again. `settle()` waits for the pass under way, so no two threads
ever write one folder's manifest.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.artifacts import get_store
from workers.artifacts import publish_tree

logger = logging.getLogger(__name__)


class BackgroundPublisher:
    """Publishes `folder` (a run's checkpoints) from a thread each time `request()` is called."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        if not get_store().remote:
            return
        with self._lock:
            self._pending = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="checkpoint-publish", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def settle(self, timeout: float | None = None) -> None:
        """Finish what was requested, then stop the thread (a later request starts another)."""
        with self._lock:
            thread, self._closing = self._thread, True
        if thread is None:
            return
        self._wake.set()
        thread.join(timeout)
        with self._lock:
            if not thread.is_alive():
                self._thread, self._closing = None, False

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, False
            if pending:
                try:
                    publish_tree(self.folder)
                except Exception:
                    logger.warning("could not publish %s; the next save tries again", self.folder,
                                   exc_info=True)  # fmt: skip
            with self._lock:
                if self._closing and not self._pending:
                    return
