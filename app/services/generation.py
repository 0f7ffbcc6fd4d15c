"""Asking an `infer` worker for an answer: resolve which model, queue the request, relay tokens.

The request travels as JSON in Redis (`generation_request_key`), the task gets only its id; the
worker appends `status`, `token`, `done` and `error` events (app/event_types.py) to the request's
stream, which the SSE relays (chat page, OpenAI-compatible API) follow. The request records who
asked for it: only that user may follow or cancel it (`check_owner`). Cancelling sets a key the
worker checks before every token.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import FieldError, InvalidInput, NotFound, ServiceUnavailable
from app.models import ModelVersion, Project, User
from app.queue import Queue, TaskName, enqueue
from app.redis_client import get_redis
from app.redis_keys import generation_cancel_key, generation_request_key
from app.services.access import project_scope
from app.services.health import alive_workers
from app.services.model_choices import loader_source
from app.services.text_limits import STOP_MAX_CHARS

REQUEST_TTL_S = 3600
IDLE_LIMIT_S = 600  # relays give up on (and cancel) an answer that produced nothing for 10 min


class GenParams(BaseModel):
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0, le=1000)
    max_new_tokens: int = Field(default=1024, ge=1, le=8192)
    repetition_penalty: float = Field(default=1.0, ge=0.5, le=2)
    stop: list[Annotated[str, Field(max_length=STOP_MAX_CHARS)]] = Field(
        default_factory=list, max_length=4
    )
    seed: int | None = None
    # Generate past end-of-sequence (benchmarks that need fixed lengths; vLLM's extension).
    ignore_eos: bool = False


def parse_params(raw: dict[str, Any]) -> GenParams:
    """Validate decoding settings, turning pydantic's errors into field errors (a 422)."""
    try:
        return GenParams.model_validate(raw)
    except ValidationError as exc:
        errors = [
            FieldError(
                ".".join(str(p) for p in err["loc"]) or "params",
                "errors.config_field",
                {"detail": err["msg"]},
            )
            for err in exc.errors()
        ]
        raise InvalidInput(errors) from exc


@dataclass
class ModelRef:
    label: str  # "base" or "v3"
    name: str  # what users and the OpenAI API call it: "slug:base", "slug:v3"
    base: str  # the loader source of the base model
    adapter_id: str | None  # stable per version, so workers cache adapters by it
    adapter_path: str | None
    template: str | None


def resolve_model(session: Session, project: Project, label: str) -> ModelRef:
    """`base` (the project's base model) or `vN` (one of its versions)."""
    base = loader_source(project.base_model)
    if label == "base":
        return ModelRef("base", f"{project.slug}:base", base, None, None, project.chat_template)
    number = label[1:] if label.startswith("v") else label
    version = None
    if number.isdigit():
        version = session.scalar(
            select(ModelVersion).where(
                ModelVersion.project_id == project.id, ModelVersion.version == int(number)
            )
        )
    if version is None:
        raise NotFound("errors.model_version_not_found", model=f"{project.slug}:{label}")
    return ModelRef(
        f"v{version.version}",
        f"{project.slug}:v{version.version}",
        loader_source(version.base_model),
        f"version-{version.id}",
        version.adapter_path,
        project.chat_template,
    )


def resolve_public_name(session: Session, owner: User, name: str) -> tuple[Project, ModelRef]:
    """`slug:v2`, `slug:base` or just `slug` (its latest version, else its base model)."""
    slug, _, label = name.partition(":")
    project = session.scalar(
        select(Project)
        .where(project_scope(owner), Project.slug == slug)
        .order_by((Project.owner_id == owner.id).desc())  # one's own first, then shared ones
        .limit(1)
    )
    if project is None:
        raise NotFound("errors.model_version_not_found", model=name)
    if not label:
        latest = session.scalar(
            select(ModelVersion.version)
            .where(ModelVersion.project_id == project.id)
            .order_by(ModelVersion.version.desc())
        )
        label = f"v{latest}" if latest else "base"
    return project, resolve_model(session, project, label)


def public_names(session: Session, owner: User) -> list[tuple[str, Project, str]]:
    """Every model the API serves: (name, project, label)."""
    out = []
    for project in session.scalars(select(Project).where(project_scope(owner))):
        out.append((f"{project.slug}:base", project, "base"))
        versions = session.scalars(
            select(ModelVersion.version).where(ModelVersion.project_id == project.id)
        )
        out += [(f"{project.slug}:v{v}", project, f"v{v}") for v in versions]
    return out


def require_infer_worker() -> None:
    try:
        workers = alive_workers()
    except Exception as exc:
        raise ServiceUnavailable("errors.no_infer_worker") from exc
    if not any(Queue.INFER.value in w.get("queues", []) for w in workers):
        raise ServiceUnavailable("errors.no_infer_worker")


def start(
    ref: ModelRef,
    messages: list[dict[str, str]],
    params: GenParams,
    *,
    owner_id: int,
    message_id: int | None = None,
) -> str:
    """Queue a generation for user `owner_id`; returns the request id whose stream carries the
    answer."""
    require_infer_worker()
    request_id = uuid.uuid4().hex
    payload: dict[str, Any] = {
        "model": asdict(ref),
        "messages": messages,
        "params": params.model_dump(),
        "message_id": message_id,
        "owner_id": owner_id,
    }
    get_redis().set(generation_request_key(request_id), json.dumps(payload), ex=REQUEST_TTL_S)
    enqueue(TaskName.GENERATE, request_id)
    return request_id


def check_owner(request_id: str, user: User) -> None:
    """NotFound unless `request_id` is a live request of `user`: another user's request answers
    exactly as an unknown or expired one does, so ids reveal nothing."""
    try:
        raw = get_redis().get(generation_request_key(request_id)) if request_id.isalnum() else None
    except RedisError as exc:  # a 503 that says so: a browser's EventSource stops retrying
        raise ServiceUnavailable("errors.redis_unavailable") from exc
    if raw is None or json.loads(raw).get("owner_id") != user.id:
        raise NotFound("errors.generation_not_found")


def cancel(request_id: str) -> None:
    get_redis().set(generation_cancel_key(request_id), "1", ex=REQUEST_TTL_S)
