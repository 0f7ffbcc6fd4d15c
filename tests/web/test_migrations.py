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


def test_0005_keeps_job_ids_from_being_reused_on_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # 0005 copies training_jobs on SQLite (batch mode); a copy without AUTOINCREMENT or its
    # counter would hand a deleted job's id, and so its runs/{id} folder, to the next job.
    from alembic import command
    from sqlalchemy import create_engine, text

    from app.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0004")
    engine = create_engine(url)
    now = "2026-01-01 00:00:00"
    job = (
        "INSERT INTO training_jobs (project_id, dataset_sha256, dataset_name, base_model, config,"
        " status, step, total_steps, epoch, created_at, updated_at) VALUES"
        f" (1, 'x', 'd', 'm', '{{}}', 'succeeded', 0, 0, 0, '{now}', '{now}')"
    )
    with engine.begin() as conn:  # (a plain engine: SQLite does not enforce foreign keys here)
        for _ in range(3):
            conn.execute(text(job))
        conn.execute(text("DELETE FROM training_jobs WHERE id = 3"))
    command.upgrade(config, "head")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM training_jobs")).scalar() == 2
        conn.execute(text(job.replace("'succeeded'", "'queued'")))
        new_id = conn.execute(text("SELECT max(id) FROM training_jobs")).scalar()
    assert new_id == 4
    command.downgrade(config, "0004")
    command.upgrade(config, "head")
