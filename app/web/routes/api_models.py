"""/api/models: the base models this platform knows, registering more, preparing them."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.schemas.common import RowId
from app.schemas.models import (
    ModelPublic,
    ModelRegister,
    ModelsPublic,
    PrepareRequest,
    ProgressPublic,
)
from app.services import model_choices, model_prep, model_progress, registered_models
from app.web.deps import CurrentUser, SessionDep, SettingsDep

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=ModelsPublic)
def list_models(session: SessionDep, user: CurrentUser, settings: SettingsDep) -> ModelsPublic:
    choices = model_choices.list_choices(session, user, settings.data_dir)
    data = [ModelPublic(**model_choices.to_public(c)) for c in choices]
    return ModelsPublic(data=data, count=len(data))


@router.post("", response_model=ModelPublic, status_code=201)
def register_model(
    body: ModelRegister, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> ModelPublic:
    if body.path:
        row = registered_models.register_local(session, user, body.path)
    else:
        row = registered_models.register_hub(session, user, body.hub_id or "")
    choice = model_choices.find_choice(session, user, row.key, settings.data_dir)
    assert choice is not None
    return ModelPublic(**model_choices.to_public(choice))


@router.delete("/registered/{model_id}", status_code=204)
def delete_model(model_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    registered_models.delete_registered(
        session, user, registered_models.get_registered(session, user, model_id)
    )
    return Response(status_code=204)


@router.post("/prepare", response_model=ProgressPublic, status_code=202)
def prepare_model(
    body: PrepareRequest, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> ProgressPublic:
    progress = model_prep.start_preparing(session, user, body.id, settings.data_dir)
    return ProgressPublic(**progress)


@router.get("/progress", response_model=ProgressPublic)
def model_progress_view(id: str, user: CurrentUser) -> ProgressPublic:
    return ProgressPublic(**model_progress.get_progress(id))
