"""What the web process does besides answering requests: register TUNELAB_MODEL_DIRS at start,
and fail training jobs whose worker vanished (no heartbeat), so no job stays "running" forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app.config import get_settings
from app.db import session_scope
from app.services import job_states
from app.services.registered_models import scan_model_dirs
from app.services.users import get_local_user

logger = logging.getLogger(__name__)
REAP_EVERY_S = 5.0


def reap_once() -> list[int]:
    with session_scope() as session:
        reaped = job_states.reap_lost_jobs(session, get_settings().job_lost_after_s)
    for job_id in reaped:
        logger.warning("job %s lost its worker; marked failed", job_id)
    return reaped


async def _reaper() -> None:
    while True:
        try:
            await asyncio.to_thread(reap_once)
        except Exception:  # the database may be briefly away; try again next round
            logger.warning("job reaper round failed", exc_info=True)
        await asyncio.sleep(REAP_EVERY_S)


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
    task = asyncio.create_task(_reaper())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
