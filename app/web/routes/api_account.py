"""/api/account/keys: a user's API keys (the key itself only in the answer that creates it)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from app.models import ApiKey
from app.schemas.common import RowId, UtcDateTime
from app.services import api_keys
from app.web.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/account", tags=["account"])


class ApiKeyCreate(BaseModel):
    name: str = Field(max_length=200)


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: UtcDateTime
    last_used_at: UtcDateTime | None
    revoked_at: UtcDateTime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The key itself: shown this once, store it now.")


class ApiKeysPublic(BaseModel):
    data: list[ApiKeyPublic]


def _public(row: ApiKey) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


@router.get("/keys", response_model=ApiKeysPublic)
def list_keys(session: SessionDep, user: CurrentUser) -> ApiKeysPublic:
    rows = api_keys.list_keys(session, user)
    return ApiKeysPublic(data=[ApiKeyPublic(**_public(r)) for r in rows])  # type: ignore[arg-type]


@router.post("/keys", response_model=ApiKeyCreated, status_code=201)
def create_key(body: ApiKeyCreate, session: SessionDep, user: CurrentUser) -> ApiKeyCreated:
    key, row = api_keys.create(session, user, body.name)
    return ApiKeyCreated(key=key, **_public(row))  # type: ignore[arg-type]


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    api_keys.revoke(session, user, key_id)
    return Response(status_code=204)
