"""What the web process does besides answering requests: register TUNELAB_MODEL_DIRS at start,
fail training jobs, evaluations and exports whose worker vanished (no heartbeat), so nothing stays
"running" forever, and delete staged uploads nobody kept or discarded within a day, so the data
dir does not fill up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from app.config import get_settings
from app.db import session_scope
from app.services import evaluation_states, exports, job_states
from app.services.registered_models import scan_model_dirs
from app.services.users import get_local_user
from app.storage import clean_stale_staging

logger = logging.getLogger(__name__)
REAP_EVERY_S = 5.0
# Staged uploads live a day (storage.STAGING_TTL_S); checking hourly keeps them at most ~25 h.
CLEAN_STAGING_EVERY_S = 3600.0


def reap_once() -> list[int]:
    """Fail training jobs, evaluations and exports whose worker stopped beating; returns the
    jobs."""
    timeout_s = get_settings().job_lost_after_s
    with session_scope() as session:
        reaped = job_states.reap_lost_jobs(session, timeout_s)
        lost_evaluations = evaluation_states.reap_lost(session, timeout_s)
        lost_exports = exports.reap_lost(session, timeout_s)
    for job_id in reaped:
        logger.warning("job %s lost its worker; marked failed", job_id)
    for evaluation_id in lost_evaluations:
        logger.warning("evaluation %s lost its worker; marked failed", evaluation_id)
    for export_id in lost_exports:
        logger.warning("export %s lost its worker; marked failed", export_id)
    return reaped


def clean_staging_once() -> int:
    removed = clean_stale_staging(get_settings().paths)
    if removed:
        logger.info("removed %d staged upload(s) nobody decided on", removed)
    return removed


async def _every(interval: Callable[[], float], work: Callable[[], object], what: str) -> None:
    """Run `work` in a thread now and then every interval() seconds until cancelled."""
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception:  # the database or disk may be briefly away; try again next round
            logger.warning("%s failed", what, exc_info=True)
        await asyncio.sleep(interval())


def _scan_model_dirs() -> None:
    dirs = get_settings().model_dirs
    if not dirs:
        return
    with session_scope() as session:
        found = scan_model_dirs(session, get_local_user(session), dirs)
    logger.info("registered %d model folder(s) from TUNELAB_MODEL_DIRS", len(found))


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    try:
        await asyncio.to_thread(_scan_model_dirs)
    except Exception:
        logger.exception("scanning TUNELAB_MODEL_DIRS failed")
    # Intervals are read each round (not bound here) so tests can shorten them.
    tasks = [
        asyncio.create_task(_every(lambda: REAP_EVERY_S, reap_once, "job reaper round")),
        asyncio.create_task(
            _every(lambda: CLEAN_STAGING_EVERY_S, clean_staging_once, "cleaning staged uploads")
        ),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
