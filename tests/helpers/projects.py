"""A project with a dataset uploaded through the API, as the tests that need one make it."""

from __future__ import annotations

import json
from typing import Any


def project_with_rows(
    client: Any, rows: list[dict[str, Any]], name: str = "p", model_dir: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(project, dataset): a project (on the model folder `model_dir`, registered here, or the
    default base model) with `rows` uploaded as a JSON Lines dataset."""
    body: dict[str, Any] = {"name": name}
    if model_dir is not None:
        body["base_model"] = client.post("/api/models", json={"path": str(model_dir)}).json()["id"]
    project = client.post("/api/projects", json=body).json()
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    return project, dataset
