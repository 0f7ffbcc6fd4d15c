"""Who may reach which project: its owner, and users it is shared with.

Every query on projects (and what hangs off them) is filtered by `project_scope(user)`. A
viewer's shared projects are in scope for reads only: `user.writing` (set per request by the
current-user dependency from the HTTP method) drops them for anything that changes state, so a
viewer's POST finds nothing (404) without each route having to say what it needs. Deleting a
project and sharing it stay with the owner (`require_owner`).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from app.errors import FieldError, Forbidden, InvalidInput, NotFound
from app.models import Project, ProjectMember, ShareRole, User


def project_scope(user: User) -> ColumnElement[bool]:
    roles = [ShareRole.EDITOR] if user.writing else [ShareRole.EDITOR, ShareRole.VIEWER]
    shared = select(ProjectMember.project_id).where(
        ProjectMember.user_id == user.id, ProjectMember.role.in_([r.value for r in roles])
    )
    return or_(Project.owner_id == user.id, Project.id.in_(shared))


def role_of(session: Session, user: User, project: Project) -> str | None:
    """ "owner", "editor", "viewer" or None."""
    if project.owner_id == user.id:
        return "owner"
    return session.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project.id, ProjectMember.user_id == user.id
        )
    )


def require_owner(user: User, project: Project) -> None:
    if project.owner_id != user.id:
        raise Forbidden("errors.owner_only")


def members(session: Session, project: Project) -> list[tuple[ProjectMember, User]]:
    rows = session.execute(
        select(ProjectMember, User)
        .join(User, User.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project.id)
        .order_by(User.username)
    )
    return [(member, user) for member, user in rows.tuples()]


def share(session: Session, owner: User, project: Project, username: str, role: str) -> None:
    """Share `project` with the user named `username` as viewer or editor (or change the role)."""
    require_owner(owner, project)
    if role not in {r.value for r in ShareRole}:
        raise InvalidInput([FieldError("role", "errors.share_role_invalid")])
    target = session.scalar(
        select(User).where(User.username == username.strip(), User.is_active.is_(True))
    )
    if target is None or target.password_hash is None:
        raise InvalidInput(
            [FieldError("username", "errors.user_unknown", {"name": username.strip()[:64]})]
        )
    if target.id == owner.id:
        raise InvalidInput([FieldError("username", "errors.share_with_self")])
    member = session.scalar(
        select(ProjectMember).where(
            ProjectMember.project_id == project.id, ProjectMember.user_id == target.id
        )
    )
    if member is None:
        session.add(ProjectMember(project_id=project.id, user_id=target.id, role=role))
    else:
        member.role = role
    session.commit()


def unshare(session: Session, owner: User, project: Project, member_id: int) -> None:
    require_owner(owner, project)
    member = session.get(ProjectMember, member_id)
    if member is None or member.project_id != project.id:
        raise NotFound("errors.member_not_found", id=member_id)
    session.delete(member)
    session.commit()


def require_admin(user: User) -> None:
    """Admins only: managing users and registering model folders (the local user, with
    accounts off, is an admin)."""
    if not user.is_admin:
        raise Forbidden("errors.admin_only")
