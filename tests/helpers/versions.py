"""Model versions written straight to the database (tests that need versions, not training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session


def add_version(
    session: Session,
    project_id: int,
    number: int,
    adapter_path: str | Path,
    base_model: str,
    **fields: Any,
) -> None:
    """Version `number` of a project whose adapter lives at `adapter_path` (committed)."""
    from app.models import ModelVersion

    values: dict[str, Any] = {
        "config": {},
        "dataset_sha256": "0" * 64,
        "dataset_name": "test",
        "libraries": {},
        "metrics": {},
        "stopped_early": False,
        **fields,
    }
    session.add(
        ModelVersion(
            project_id=project_id,
            version=number,
            adapter_path=str(adapter_path),
            base_model=base_model,
            **values,
        )
    )
    session.commit()


def adapter_dir(version_id: int) -> Path:
    """Where a version's adapter lives, read from the database: the API never says."""
    from app.db import get_sessionmaker
    from app.models import ModelVersion

    with get_sessionmaker()() as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None, version_id
        # A store key (runs/7/adapter) under this data dir; older rows hold absolute paths.
        from app.config import get_settings

        return get_settings().paths.root / version.adapter_path
