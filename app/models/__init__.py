"""ORM tables. Importing this package registers every table on `Base.metadata` (Alembic)."""

from app.models.base import Base
from app.models.project import Project
from app.models.user import User

__all__ = ["Base", "Project", "User"]
