"""Project request/response models for the JSON API and the forms."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.common import UtcDateTime


class ProjectCreate(BaseModel):
    name: str
    description: str = ""
    base_model: str | None = None


class ProjectUpdate(BaseModel):
    name: str | None = None
    description: str | None = None
    base_model: str | None = None
    # "" resets to the model's own template (or the catalog's default for models without one).
    chat_template: str | None = None
    max_length: int | None = Field(default=None, ge=16, le=131072)


class ProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    description: str
    base_model: str
    chat_template: str | None
    max_length: int
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ProjectsPublic(BaseModel):
    data: list[ProjectPublic]
    count: int
