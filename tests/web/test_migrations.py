"""Alembic migrations produce exactly the schema the ORM models declare (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.db import get_engine
from app.models import Base


def test_migrations_match_models(platform_env) -> None:  # type: ignore[no-untyped-def]
    engine = get_engine(platform_env["TUNELAB_DATABASE_URL"])
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_downgrade_and_upgrade_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from app.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'x.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    assert set(inspect(create_engine(url)).get_table_names()) == {"alembic_version"}
    command.upgrade(config, "head")
    assert "projects" in inspect(create_engine(url)).get_table_names()
