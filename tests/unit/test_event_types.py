"""The typed events: what producers publish is what consumers read back, the union rejects
what it does not know, and the JSON keeps the fields the browser reads."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from app import events
from app.event_types import (
    GENERATION_EVENTS,
    JOB_EVENTS,
    ChatErrorCode,
    GenerationDone,
    GenerationError,
    GenerationStatus,
    GenerationToken,
    JobLog,
    JobMetric,
    JobStart,
    JobStatusChanged,
    generation_ended,
    job_stream_ended,
)
from app.models import JobStatus

METRIC = {
    "step": 3,
    "total_steps": 10,
    "epoch": 0.3,
    "loss": 1.25,
    "eval_loss": None,
    "lr": 2e-4,
    "grad_norm": 0.8,
    "tokens_per_s": 95.5,
    "elapsed_s": 12.0,
    "eta_s": 28.0,
    "tokens_seen": 1234,  # an extra key the trainer's contract allows
}

JOB_CASES = [
    JobStart(total_steps=10, info={"device": "cpu", "resumed_from_step": 0}),
    JobMetric.model_validate(METRIC),
    JobLog(line="2025-01-01 00:00:00 checkpoint saved"),
    JobStatusChanged(status=JobStatus.RUNNING),
    JobStatusChanged(
        status=JobStatus.FAILED, code="oom", params={"batch_size": 8}, message="Out of memory."
    ),
]
GENERATION_CASES = [
    GenerationStatus(state="loading"),
    GenerationToken(text="张家界\n<b>"),
    GenerationDone(
        finish_reason="length",
        prompt_tokens=12,
        completion_tokens=8,
        time_to_first_token_s=0.05,
        tokens_per_s=30.0,
    ),
    GenerationError.of(ChatErrorCode.PROMPT_TOO_LONG, prompt_tokens=9000, over_by=808, limit=8192),
]


@pytest.mark.parametrize("event", JOB_CASES, ids=lambda e: e.type)
def test_job_events_round_trip_through_a_stream_entry(event) -> None:  # type: ignore[no-untyped-def]
    assert events.parse(JOB_EVENTS, events.entry(event)) == event


@pytest.mark.parametrize("event", GENERATION_CASES, ids=lambda e: e.type)
def test_generation_events_round_trip_through_a_stream_entry(event) -> None:  # type: ignore[no-untyped-def]
    assert events.parse(GENERATION_EVENTS, events.entry(event)) == event


def test_the_entry_keeps_the_layout_and_fields_the_browser_reads() -> None:
    metric = events.entry(JOB_CASES[1])
    assert metric["type"] == "metric"
    data = json.loads(metric["data"])
    assert "type" not in data  # the type travels as the SSE `event:` name
    assert {k: data[k] for k in METRIC} == METRIC  # job_live.js reads these, extras included
    token = json.loads(events.entry(GenerationToken(text="好"))["data"])
    assert token == {"text": "好"}
    # An entry written before the typed events existed (job_states' old failed status) reads.
    old = {"type": "status", "data": json.dumps({"status": "failed", "error": "x", "code": "y"})}
    assert events.parse(JOB_EVENTS, old) == JobStatusChanged(status=JobStatus.FAILED, code="y")


def test_unknown_types_and_bad_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        events.parse(JOB_EVENTS, {"type": "token", "data": json.dumps({"text": "x"})})
    with pytest.raises(ValidationError):
        events.parse(GENERATION_EVENTS, {"type": "metric", "data": json.dumps(METRIC)})
    with pytest.raises(ValidationError):
        JOB_EVENTS.validate_python({"type": "status", "status": "exploded"})
    with pytest.raises(ValidationError):
        GENERATION_EVENTS.validate_python({"type": "error", "code": "nope", "message": "x"})
    with pytest.raises(ValidationError):
        JobMetric.model_validate({**METRIC, "loss": "high"})


def test_end_conditions() -> None:
    ended = [e for e in JOB_CASES if job_stream_ended(e)]
    assert ended == [JOB_CASES[-1]]
    assert all(job_stream_ended(JobStatusChanged(status=s)) for s in ("succeeded", "cancelled"))
    assert not job_stream_ended(JobStatusChanged(status=JobStatus.QUEUED))
    assert [e.type for e in GENERATION_CASES if generation_ended(e)] == ["done", "error"]


def test_an_error_carries_code_params_and_the_english_message() -> None:
    error = GENERATION_CASES[-1]
    assert error.code == "prompt_too_long"
    assert error.params == {"prompt_tokens": 9000, "over_by": 808, "limit": 8192}
    assert "9000 tokens long, 808 over the model's limit of 8192" in error.message
