"""Browser pages for projects: list + create form, project page, rename, delete (htmx)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.errors import InvalidInput
from app.models import Project
from app.schemas.common import RowId
from app.schemas.projects import ProjectCreate, ProjectUpdate
from app.services import access, lineage, model_choices
from app.services import datasets as dataset_service
from app.services import evaluations as evaluation_service
from app.services import jobs as job_service
from app.services import projects as service
from app.web.deps import (
    CurrentUser,
    IsHtmx,
    ProjectDep,
    SessionDep,
    SettingsDep,
    TranslatorDep,
)
from app.web.errors import field_details
from app.web.templating import render

router = APIRouter(tags=["pages"], include_in_schema=False)


def redirect(url: str, htmx: bool) -> Response:
    """htmx follows HX-Redirect with a full page load; plain forms get a 303."""
    if htmx:
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def form_errors(exc: InvalidInput, t: TranslatorDep) -> dict[str, str]:
    return {d["field"]: d["message"] for d in field_details(exc.errors, t)}


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/projects", status_code=303)


@router.get("/projects")
def projects_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
) -> HTMLResponse:
    return render(
        request,
        "pages/projects.html",
        projects=service.list_projects(session, user),
        models=model_choices.list_choices(session, user, settings.data_dir),
        form={"base_model": model_choices.default_model_id()},
        errors={},
    )


@router.post("/projects")
def create_project(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    t: TranslatorDep,
    htmx: IsHtmx,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    base_model: Annotated[str, Form()] = "",
) -> Response:
    data = ProjectCreate(name=name, description=description, base_model=base_model or None)
    try:
        project = service.create_project(session, user, data)
    except InvalidInput as exc:
        return render(
            request,
            "partials/project_form.html" if htmx else "pages/projects.html",
            status_code=422,
            projects=service.list_projects(session, user),
            models=model_choices.list_choices(session, user, settings.data_dir),
            form=data.model_dump(),
            errors=form_errors(exc, t),
        )
    return redirect(f"/projects/{project.id}", htmx)


@router.get("/projects/{project_id}")
def project_page(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _t: TranslatorDep,
) -> HTMLResponse:
    versions = job_service.list_versions(session, project)
    return render(
        request,
        "pages/project.html",
        project=project,
        model=model_choices.find_choice(session, user, project.base_model, settings.data_dir),
        datasets=dataset_service.list_datasets(session, project),
        jobs=job_service.list_jobs(session, project),
        versions=versions,
        lineage=lineage.chains(versions),
        headlines=evaluation_service.latest_headlines(session, project),
        chat_templates=service.CHAT_TEMPLATES,
        errors={},
        role=access.role_of(session, user, project),
        members=access.members(session, project),
    )


@router.post("/projects/{project_id}/settings")
def update_project(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    htmx: IsHtmx,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    chat_template: Annotated[str, Form()] = "",
    max_length: Annotated[int, Form(ge=16, le=131072)] = 1024,
) -> Response:
    data = ProjectUpdate(
        name=name, description=description, chat_template=chat_template, max_length=max_length
    )
    try:
        service.update_project(session, user, project.id, data)
    except InvalidInput as exc:
        session.rollback()
        session.refresh(project)
        return render(
            request,
            "partials/project_settings.html",
            status_code=422,
            project=project,
            chat_templates=service.CHAT_TEMPLATES,
            form=data.model_dump(),
            errors=form_errors(exc, t),
        )
    return redirect(f"/projects/{project.id}", htmx)


@router.delete("/projects/{project_id}")
@router.post("/projects/{project_id}/delete")
def delete_project(
    project: ProjectDep, session: SessionDep, user: CurrentUser, settings: SettingsDep, htmx: IsHtmx
) -> Response:
    service.delete_project(session, user, project.id, settings.paths)
    return redirect("/projects", htmx)


def _members(
    request: Request,
    session: SessionDep,
    project: Project,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    return render(
        request, "partials/project_members.html", status_code, project=project,
        members=access.members(session, project), share_errors=errors or {},
    )  # fmt: skip


@router.post("/projects/{project_id}/members")
def share_project(
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    user: CurrentUser,
    t: TranslatorDep,
    htmx: IsHtmx,
    username: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=16)] = "viewer",
) -> Response:
    try:
        access.share(session, user, project, username, role)
    except InvalidInput as exc:
        return _members(request, session, project, 422, form_errors(exc, t))
    if not htmx:
        return redirect(f"/projects/{project.id}#sharing", htmx)
    return _members(request, session, project)


@router.post("/projects/{project_id}/members/{member_id}/delete")
def unshare_project(
    member_id: RowId,
    request: Request,
    project: ProjectDep,
    session: SessionDep,
    user: CurrentUser,
    htmx: IsHtmx,
) -> Response:
    access.unshare(session, user, project, member_id)
    if not htmx:
        return redirect(f"/projects/{project.id}#sharing", htmx)
    return _members(request, session, project)
