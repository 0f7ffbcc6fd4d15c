"""Base-model catalog responses and registration requests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, model_validator


class ModelPublic(BaseModel):
    id: str
    kind: str
    display_name: str
    family: str
    architecture: str
    parameter_count: int | None
    parameters: str
    context_length: int | None
    languages: list[str]
    licence: str
    has_chat_template: bool
    default_chat_template: str | None
    description: str
    status: str
    # Why the model has its status: `status_reason` in English (logs, scripts), and the code
    # with its parameters that pages render in the reader's language (app.error_codes).
    status_reason: str
    status_reason_code: str | None = None
    status_params: dict[str, Any] = {}
    default: bool
    registered_id: int | None


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int


class ModelRegister(BaseModel):
    """Exactly one of `path` (a local Hugging Face folder) or `hub_id` (org/name)."""

    path: str | None = None
    hub_id: str | None = None

    @model_validator(mode="after")
    def one_source(self) -> ModelRegister:
        if bool(self.path) == bool(self.hub_id):
            raise ValueError("give exactly one of `path` or `hub_id`")
        return self


class PrepareRequest(BaseModel):
    id: str


class ProgressPublic(BaseModel):
    id: str
    state: str  # idle | queued | running | done | failed
    fraction: float
    message: str
    # On failure: the error's code and parameters (app.error_codes); `message` is the English.
    code: str | None = None
    params: dict[str, Any] = {}
