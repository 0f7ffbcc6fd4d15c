"""A chat answer whose page stream stopped is cancelled only if no reader comes back within the
grace (app/services/answer_readers.py): a page reconnecting after a web restart keeps its answer
going; a closed tab frees the worker. Real Redis; the timer is joined, nothing is timed."""

from __future__ import annotations

import pytest

from app.redis_client import get_redis
from app.redis_keys import generation_cancel_key
from app.services import answer_readers


@pytest.fixture
def short_grace(platform_env, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(answer_readers, "RESUME_GRACE_S", 0.2)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_reader_that_comes_back_keeps_the_answer(short_grace, database_url) -> None:  # type: ignore[no-untyped-def]
    request_id = "a" * 32
    timer = answer_readers.abandon(request_id)  # the web went away under the page
    answer_readers.attach(request_id)  # the page is back, on the new web process
    timer.join()
    assert not get_redis().exists(generation_cancel_key(request_id))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_answer_nobody_reads_is_cancelled(short_grace, database_url) -> None:  # type: ignore[no-untyped-def]
    request_id = "b" * 32
    answer_readers.abandon(request_id).join()  # a closed tab
    assert get_redis().exists(generation_cancel_key(request_id))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_stale_timer_does_not_cancel_a_later_stream(
    short_grace, monkeypatch, database_url
) -> None:  # type: ignore[no-untyped-def]
    """Gone, back, gone again: only the last departure's timer may cancel."""
    request_id = "c" * 32
    first = answer_readers.abandon(request_id)
    answer_readers.attach(request_id)
    monkeypatch.setattr(answer_readers, "RESUME_GRACE_S", 600.0)
    second = answer_readers.abandon(request_id)
    first.join()
    second.cancel()
    assert not get_redis().exists(generation_cancel_key(request_id))
