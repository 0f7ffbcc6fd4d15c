"""How `tunelab up` starts its children so that none outlives it."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent_at(niceness: int) -> Callable[[], None]:
    """preexec_fn: die_with_parent, and a lower CPU priority (`nice`) when niceness > 0."""

    def preexec() -> None:
        die_with_parent()
        if niceness > 0:
            os.nice(niceness)

    return preexec


def die_with_parent() -> None:
    """preexec_fn: a new process group (so a stop reaches a worker's pool children too), and
    SIGTERM when the parent dies, even by SIGKILL (Linux only)."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: process groups still give a clean stop on SIGINT/SIGTERM
