"""Project request/response models for the JSON API and the forms."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ProjectCreate(BaseModel):
    name: str
    description: str = ""
    base_model: str | None = None


class ProjectUpdate(BaseModel):
    name: str | None = None
    description: str | None = None
    base_model: str | None = None


class ProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    description: str
    base_model: str
    created_at: datetime
    updated_at: datetime


class ProjectsPublic(BaseModel):
    data: list[ProjectPublic]
    count: int
