"""Evaluation request/response models (the contract of /api/evaluations)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import ROW_ID_MAX, RowId, UtcDateTime


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: RowId
    # The test set: a dataset of the project, or a training job's validation split.
    dataset_id: RowId | None = None
    job_id: RowId | None = None
    # "base", "v1", ...; default: the base model and every version.
    versions: list[str] | None = Field(default=None, max_length=32)
    max_new_tokens: int = 256
    temperature: float = 0.0  # greedy: scores that do not change between runs
    top_p: float = 1.0
    seed: int = Field(default=0, ge=0)
    include_general: bool = False  # also the general-purpose sample ("did it forget?")


class EvaluationQueued(BaseModel):
    id: int
    status: str


class EvaluationPublic(BaseModel):
    id: int
    project_id: int
    status: str
    progress: dict[str, Any] | None
    dataset_id: int | None
    job_id: int | None
    source_name: str
    source_sha256: str
    versions: list[str]
    settings: dict[str, Any]  # decoding settings, as recorded (no server paths)
    results: list[dict[str, Any]]
    best: dict[str, str]  # metric -> version with the best value
    methods: dict[str, Any] | None
    example_count: int
    error_code: str | None
    error_params: dict[str, Any] | None
    error: str | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class EvaluationsPublic(BaseModel):
    data: list[EvaluationPublic]
    count: int


class ReviewVote(BaseModel):
    """One blind choice: the example, the two versions as they were shown (left, right), which
    side won ("left", "right" or "tie"), and optional 1-5 scores per side."""

    model_config = ConfigDict(extra="forbid")

    position: int = Field(ge=0, le=ROW_ID_MAX)  # an INTEGER column: larger was a 500
    left: str
    right: str
    choice: Literal["left", "right", "tie"]
    scores: dict[Literal["left", "right"], dict[str, int | str | None]] = {}
