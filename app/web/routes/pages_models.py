"""The base-model catalog page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app.services import model_choices
from app.web.deps import SettingsDep, TranslatorDep
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/models")
def models_page(request: Request, settings: SettingsDep, _t: TranslatorDep) -> HTMLResponse:
    return render(
        request, "pages/models.html", models=model_choices.list_choices(settings.data_dir)
    )
