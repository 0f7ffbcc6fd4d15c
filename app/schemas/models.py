"""Base-model catalog responses."""

from __future__ import annotations

from pydantic import BaseModel


class ModelPublic(BaseModel):
    id: str
    display_name: str
    family: str
    architecture: str
    parameter_count: int
    parameters: str
    context_length: int
    languages: list[str]
    licence: str
    has_chat_template: bool
    description: str
    status: str
    status_reason: str
    default: bool


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int
