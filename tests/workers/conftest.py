"""Fixtures worker tests share: the chat tests' served versions (one engine's module and
another's run the same tests) and a training worker to inject faults into."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.faults import accelerator_worker
from tests.helpers.services import WorkerProcess
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


@pytest.fixture
def train_worker(platform_env, tmp_path) -> Iterator[WorkerProcess]:  # type: ignore[no-untyped-def]
    """A `train,eval` worker of its own (as `tunelab up` starts it), for a test that kills or
    starves it."""
    worker = accelerator_worker(platform_env, tmp_path / "train.log")
    worker.start()
    yield worker
    worker.stop()
