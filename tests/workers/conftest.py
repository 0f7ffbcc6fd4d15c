"""Fixtures the chat tests share (one engine's module and another's run the same tests)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.versions import add_version


@pytest.fixture
def served(client, tiny_model_dir, db_session, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from tests.inference.helpers import build_adapter

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "chat", "base_model": model["id"]}).json()
    for number, seed in ((1, 1), (2, 2)):
        adapter = build_adapter(tiny_model_dir, tmp_path / f"adapter-{number}", seed=seed)
        add_version(db_session, project["id"], number, adapter, model["id"])
    return {"project": project}
