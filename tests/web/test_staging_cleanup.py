"""Staged uploads nobody kept or discarded are deleted by the running web app: once at start and
then periodically; a staged upload younger than the TTL is left for its user to decide on."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import lifespan
from app.config import get_settings
from app.storage import STAGING_TTL_S


def _staged(age_s: float) -> Path:
    """A staged upload (with a file in it) whose folder was last touched `age_s` seconds ago."""
    _, folder = get_settings().paths.new_staging()
    (folder / "original.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def _wait_gone(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not path.exists(), f"{path} was not cleaned up"


@pytest.fixture
def running_app(platform_env: dict[str, str]) -> Iterator[None]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()):
        yield


@pytest.fixture
def stale_and_fresh(platform_env: dict[str, str]) -> tuple[Path, Path]:
    return _staged(STAGING_TTL_S + 60), _staged(STAGING_TTL_S - 600)


def test_stale_staged_upload_is_removed_at_start_and_fresh_one_kept(
    stale_and_fresh: tuple[Path, Path], running_app: None
) -> None:
    stale, fresh = stale_and_fresh
    _wait_gone(stale)
    assert (fresh / "original.jsonl").is_file()


def test_cleanup_repeats_while_the_app_runs(
    stale_and_fresh: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifespan, "CLEAN_STAGING_EVERY_S", 0.1)  # hourly in production
    from fastapi.testclient import TestClient

    from app.main import create_app

    stale, fresh = stale_and_fresh
    with TestClient(create_app()):
        _wait_gone(stale)  # the first round ran
        later = _staged(STAGING_TTL_S + 60)  # goes stale while the app runs
        _wait_gone(later)
        assert (fresh / "original.jsonl").is_file()
