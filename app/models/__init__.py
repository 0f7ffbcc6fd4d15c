"""ORM tables. Importing this package registers every table on `Base.metadata` (Alembic)."""

from app.models.base import Base
from app.models.dataset import Dataset
from app.models.project import Project
from app.models.registered_model import RegisteredModel
from app.models.user import User

__all__ = ["Base", "Dataset", "Project", "RegisteredModel", "User"]
