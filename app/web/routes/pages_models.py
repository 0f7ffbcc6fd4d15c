"""The base-model catalog page: status, registering folders and hub ids, preparing models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import HTMLResponse, Response

from app.errors import AppError, InvalidInput
from app.schemas.common import RowId
from app.services import model_choices, model_prep, model_progress, registered_models
from app.web.deps import CurrentUser, IsHtmx, SessionDep, SettingsDep, TranslatorDep
from app.web.errors import field_details
from app.web.routes.pages_projects import redirect
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


def models_view(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    choices = model_choices.list_choices(session, user, settings.data_dir)
    return render(
        request,
        "pages/models.html",
        status_code=status_code,
        models=choices,
        errors=errors or {},
        form=form or {},
    )


@router.get("/models")
def models_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
) -> HTMLResponse:
    return models_view(request, session, user, settings)


@router.post("/models/register")
def register(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    t: TranslatorDep,
    htmx: IsHtmx,
    source: Annotated[str, Form()] = "",
) -> Response:
    source = source.strip()
    try:
        if source and "/" in source and not source.startswith(("/", ".", "~")):
            registered_models.register_hub(session, user, source)
        else:
            registered_models.register_local(session, user, source)
    except InvalidInput as exc:
        errors = {"source": " ".join(d["message"] for d in field_details(exc.errors, t))}
        return models_view(
            request,
            session,
            user,
            settings,
            errors=errors,
            form={"source": source},
            status_code=422,
        )
    return redirect("/models", htmx)


@router.post("/models/prepare")
def prepare(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    t: TranslatorDep,
    id: Annotated[str, Form()],
) -> HTMLResponse:
    try:
        model_prep.start_preparing(session, user, id, settings.data_dir)
    except AppError as exc:
        return render(request, "partials/upload_error.html", message=t(exc.key, **exc.params))
    return progress(request, id, _t=t)


@router.get("/models/progress")
def progress(request: Request, id: str, _t: TranslatorDep) -> HTMLResponse:
    return render(request, "partials/model_progress.html", progress=model_progress.get_progress(id))


@router.delete("/models/registered/{model_id}")
def delete(model_id: RowId, session: SessionDep, user: CurrentUser, htmx: IsHtmx) -> Response:
    registered_models.delete_registered(
        session, user, registered_models.get_registered(session, user, model_id)
    )
    return redirect("/models", htmx)
