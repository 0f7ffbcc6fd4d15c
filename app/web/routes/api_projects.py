"""JSON API for projects: /api/projects (the browser pages mirror it)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.schemas.common import RowId
from app.schemas.projects import ProjectCreate, ProjectPublic, ProjectsPublic, ProjectUpdate
from app.services import projects as service
from app.web.deps import CurrentUser, ProjectDep, SessionDep, SettingsDep

router = APIRouter(prefix="/api/projects", tags=["projects"])


@router.get("", response_model=ProjectsPublic)
def list_projects(session: SessionDep, user: CurrentUser) -> ProjectsPublic:
    items = service.list_projects(session, user)
    return ProjectsPublic(data=[ProjectPublic.model_validate(p) for p in items], count=len(items))


@router.post("", response_model=ProjectPublic, status_code=201)
def create_project(body: ProjectCreate, session: SessionDep, user: CurrentUser) -> ProjectPublic:
    return ProjectPublic.model_validate(service.create_project(session, user, body))


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project: ProjectDep) -> ProjectPublic:
    return ProjectPublic.model_validate(project)


@router.patch("/{project_id}", response_model=ProjectPublic)
def update_project(
    project_id: RowId, body: ProjectUpdate, session: SessionDep, user: CurrentUser
) -> ProjectPublic:
    return ProjectPublic.model_validate(service.update_project(session, user, project_id, body))


@router.delete("/{project_id}", status_code=204)
def delete_project(
    project_id: RowId, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    service.delete_project(session, user, project_id, settings.paths)
    return Response(status_code=204)
