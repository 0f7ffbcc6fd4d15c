"""GET /api/models: the base models this platform knows, with their status."""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas.models import ModelPublic, ModelsPublic
from app.services import model_choices
from app.web.deps import SettingsDep

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=ModelsPublic)
def list_models(settings: SettingsDep) -> ModelsPublic:
    choices = model_choices.list_choices(settings.data_dir)
    data = [ModelPublic(**model_choices.to_public(c)) for c in choices]
    return ModelsPublic(data=data, count=len(data))
