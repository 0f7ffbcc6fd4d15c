"""Run Alembic migrations from code (`tunelab db upgrade`, `tunelab up`, test fixtures)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from app.config import get_settings
from app.paths import ROOT


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url or get_settings().sqlalchemy_url)
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
