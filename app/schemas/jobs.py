"""Training job request/response models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from app.schemas.common import RowId, UtcDateTime
from app.schemas.no_paths import without_paths


class JobCreate(BaseModel):
    dataset_id: RowId
    # Another dataset of the project to validate on, instead of a val_percent split.
    val_dataset_id: RowId | None = None
    config: dict[str, Any] = {}
    preset: str | None = None
    # A version number of the project (2 for v2) whose adapter the run starts from; None: the
    # base model. The version's rank, alpha and target modules replace the config's.
    continue_from: RowId | None = None


class JobClone(BaseModel):
    config: dict[str, Any] = {}
    dataset_id: RowId | None = None
    val_dataset_id: RowId | None = None
    # Left out: the cloned job's starting version; null: the base model.
    continue_from: RowId | None = None


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    dataset_id: int | None
    dataset_name: str
    dataset_sha256: str
    val_dataset_id: int | None = None
    val_dataset_sha256: str | None = None
    base_model: str
    config: dict[str, Any]
    status: str
    stop_requested: str | None
    # A failure: its code and parameters (app.error_codes; pages render them through the
    # message catalogs) and the English sentence, for logs and scripts.
    error_code: str | None
    error_params: dict[str, Any] | None = None
    error: str | None
    step: int
    total_steps: int
    epoch: float
    result: dict[str, Any] | None
    # What the estimate promised at creation (app.services.estimates.Estimate.as_record).
    estimate: dict[str, Any] | None = None
    cloned_from_id: int | None
    # The version (its id) the run continues from; None: the base model.
    parent_version_id: int | None = None
    queue_position: int | None = None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None

    @field_validator("result")
    @classmethod
    def _no_server_paths(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return without_paths(value)


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int


class VersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    job_id: int | None
    version: int
    name: str
    base_model: str
    config: dict[str, Any]
    dataset_sha256: str
    dataset_name: str
    libraries: dict[str, Any]
    metrics: dict[str, Any]
    stopped_early: bool
    # The version (its id) this one continued from; None: trained from the base model.
    parent_id: int | None = None
    created_at: UtcDateTime


class VersionsPublic(BaseModel):
    data: list[VersionPublic]
    count: int
