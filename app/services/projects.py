"""Projects: create, list, rename and delete, always scoped to the owner."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.artifacts import get_store
from app.errors import FieldError, InvalidInput, NotFound
from app.models import ModelVersion, Project, TrainingJob, User
from app.models.project import NAME_MAX_LENGTH
from app.schemas.projects import ProjectCreate, ProjectUpdate
from app.services import model_choices
from app.services.access import project_scope, require_owner
from app.storage import DataDir

DESCRIPTION_MAX_LENGTH = 2000


def slugify(name: str) -> str:
    """ASCII slug for ids such as `travel-guide:v2`; non-Latin names fall back to `project`."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:NAME_MAX_LENGTH] or "project"


def list_projects(session: Session, owner: User) -> list[Project]:
    query = select(Project).where(project_scope(owner)).order_by(Project.updated_at.desc())
    return list(session.scalars(query))


def get_project(session: Session, owner: User, project_id: int) -> Project:
    project = session.scalar(select(Project).where(Project.id == project_id, project_scope(owner)))
    if project is None:
        raise NotFound("errors.project_not_found", id=project_id)
    return project


def _clean_name(session: Session, owner: User, name: str, exclude_id: int | None) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidInput([FieldError("name", "errors.name_required")])
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(
            [FieldError("name", "errors.name_too_long", {"max": NAME_MAX_LENGTH, "got": len(name)})]
        )
    # Compared here, not with SQL's lower(): SQLite's lowers ASCII letters only, so "Équipe"
    # twice passed the check and hit the unique constraint (a 500).
    others = session.execute(select(Project.id, Project.name).where(Project.owner_id == owner.id))
    if any(pid != exclude_id and other.casefold() == name.casefold() for pid, other in others):
        raise InvalidInput([FieldError("name", "errors.name_taken", {"name": name})])
    return name


def _clean_description(description: str) -> str:
    description = description.strip()
    if len(description) > DESCRIPTION_MAX_LENGTH:
        raise InvalidInput(
            [
                FieldError(
                    "description",
                    "errors.description_too_long",
                    {"max": DESCRIPTION_MAX_LENGTH, "got": len(description)},
                )
            ]
        )
    return description


def _unique_slug(session: Session, owner: User, name: str, exclude_id: int | None) -> str:
    base = slugify(name)
    taken = set(
        session.scalars(
            select(Project.slug).where(
                Project.owner_id == owner.id,
                Project.slug.like(f"{base}%"),
                Project.id != (exclude_id or -1),
            )
        )
    )
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


# Tries of a create or rename whose name or slug another request took at the same moment.
NAME_RACE_TRIES = 3


def _commit_named(session: Session, apply: Callable[[], Project]) -> Project:
    """Check and apply a name (and anything else), then commit. Two requests at the same moment
    can both pass the checks; the unique constraints then refuse the later commit. It is rolled
    back and `apply` runs again: its name check now says "taken" (a 422 naming the field, as if
    they had come one after the other), or it picks the next free slug. Never a 500."""
    for attempt in range(NAME_RACE_TRIES):
        try:
            project = apply()  # its queries flush what it added: the constraint may refuse here
            session.commit()
            return project
        except IntegrityError:
            session.rollback()
            if attempt == NAME_RACE_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def create_project(session: Session, owner: User, data: ProjectCreate) -> Project:
    def apply() -> Project:
        name = _clean_name(session, owner, data.name, exclude_id=None)
        project = Project(
            owner_id=owner.id,
            name=name,
            slug=_unique_slug(session, owner, name, exclude_id=None),
            description=_clean_description(data.description),
            base_model=model_choices.check_base_model(session, owner, data.base_model),
        )
        session.add(project)
        return project

    return _commit_named(session, apply)


def update_project(session: Session, owner: User, project_id: int, data: ProjectUpdate) -> Project:
    def apply() -> Project:
        project = get_project(session, owner, project_id)
        if data.name is not None:
            # Names and slugs are unique per owner: an editor renames within the owner's projects.
            project_owner = session.get(User, project.owner_id) or owner
            project.name = _clean_name(session, project_owner, data.name, exclude_id=project.id)
            project.slug = _unique_slug(session, project_owner, project.name, project.id)
        if data.description is not None:
            project.description = _clean_description(data.description)
        if data.base_model is not None:
            project.base_model = model_choices.check_base_model(session, owner, data.base_model)
        if data.chat_template is not None:
            project.chat_template = check_chat_template(data.chat_template)
        if data.max_length is not None:
            project.max_length = data.max_length
        return project

    return _commit_named(session, apply)


# Named templates the workers know (workers/ml/chat_templates.yaml; a test keeps them in step).
CHAT_TEMPLATES = ("chatml", "llama2", "alpaca", "gemma")


def check_chat_template(name: str) -> str | None:
    if not name:
        return None
    if name not in CHAT_TEMPLATES:
        raise InvalidInput(
            [
                FieldError(
                    "chat_template",
                    "errors.unknown_template",
                    {"name": name, "known": ", ".join(CHAT_TEMPLATES)},
                )
            ]
        )
    return name


def delete_project(session: Session, owner: User, project_id: int, data_dir: DataDir) -> None:
    """Delete the project, its rows (cascade) and then its files."""
    project = get_project(session, owner, project_id)
    require_owner(owner, project)
    folders = [data_dir.dataset(d.id) for d in project.datasets]
    job_ids = session.scalars(select(TrainingJob.id).where(TrainingJob.project_id == project.id))
    folders += [data_dir.run(job_id) for job_id in job_ids]
    version_ids = session.scalars(
        select(ModelVersion.id).where(ModelVersion.project_id == project.id)
    )
    folders += [data_dir.export_dir(version_id) for version_id in version_ids]
    session.delete(project)
    session.commit()
    store = get_store()
    for folder in folders:
        store.delete(data_dir.key(folder))  # the store's copy and this machine's
