"""Export request/response models (the contract of /api/versions/{id}/exports)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.schemas.common import UtcDateTime


class ExportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str


class ExportPublic(BaseModel):
    format: str
    status: str  # "none" when never asked for, else queued | running | succeeded | failed
    progress: dict[str, Any] | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    verification: dict[str, Any] | None = None
    error_code: str | None = None
    error_params: dict[str, Any] | None = None
    error: str | None = None
    download_url: str | None = None
    finished_at: UtcDateTime | None = None


class ExportsPublic(BaseModel):
    version_id: int
    name: str  # slug:vN
    data: list[ExportPublic]
