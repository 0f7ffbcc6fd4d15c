"""ORM tables. Importing this package registers every table on `Base.metadata` (Alembic)."""

from app.models.auth import ApiKey, ProjectMember, ShareRole, UserSession
from app.models.base import Base
from app.models.chat import ChatMessage, ComparisonVote, Conversation
from app.models.dataset import Dataset
from app.models.evaluation import Evaluation, EvaluationExample
from app.models.export import Export
from app.models.job import JobStatus, MetricPoint, TrainingJob
from app.models.project import Project
from app.models.registered_model import RegisteredModel
from app.models.user import User
from app.models.version import ModelVersion

__all__ = [
    "ApiKey",
    "Base",
    "ChatMessage",
    "ComparisonVote",
    "Conversation",
    "Dataset",
    "Evaluation",
    "EvaluationExample",
    "Export",
    "JobStatus",
    "MetricPoint",
    "ModelVersion",
    "Project",
    "ProjectMember",
    "RegisteredModel",
    "ShareRole",
    "TrainingJob",
    "User",
    "UserSession",
]
