"""Dataset request/response models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import UtcDateTime


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    name: str
    original_filename: str
    container: str
    format: str
    sha256: str
    size_bytes: int
    row_count: int
    dropped_count: int
    warning_count: int
    val_percent: int
    stats_status: str
    stats: dict[str, Any] | None
    stats_error: str | None
    created_at: UtcDateTime


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class DatasetUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    val_percent: int | None = Field(default=None, ge=0, le=50)


class RowIssuePublic(BaseModel):
    row: int | None
    field: str | None
    code: str
    severity: str
    message: str


class RowsPublic(BaseModel):
    data: list[dict[str, Any]]
    offset: int
    limit: int
    total: int
