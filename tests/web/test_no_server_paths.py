"""No API answer names a file or folder on the server: where a version's adapter, a run's
checkpoints or anything else lives is the server's business.

Typed answers are checked from the app's own OpenAPI document, so a new response model is
covered without being listed; free-form ones that carry a worker's record (a job's `result`)
are checked on real rows."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import update

from app.event_types import JobStart
from app.main import create_app
from app.models import ModelVersion, TrainingJob

# A property whose name says it holds a location on disk.
PATH_LIKE = re.compile(r"(path|_dir|dir|folder|directory|filepath|file_?name)$", re.I)

# (schema, property) pairs that may stay, each with why.
ALLOWED = {
    # The name the user's own file had when uploaded, for display and downloads: the file is
    # stored under a generated name (tests/web/test_upload_names.py), so it is not a location.
    ("DatasetPublic", "original_filename"),
}


def _properties(
    schema: dict[str, Any], components: dict[str, Any], owner: str, seen: set[str]
) -> list[tuple[str, str]]:
    """Every (schema name, property) reachable from `schema`, following $refs once."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _properties(components[name], components, name, seen)
    found: list[tuple[str, str]] = []
    children = [*schema.get("allOf", []), *schema.get("anyOf", []), *schema.get("oneOf", [])]
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        children.append(schema["additionalProperties"])
    for prop, sub in schema.get("properties", {}).items():
        found.append((owner, prop))
        children.append(sub)
    for child in children:
        found += _properties(child, components, owner, seen)
    return found


def _answer_properties() -> set[tuple[str, str]]:
    spec = create_app().openapi()
    components = spec.get("components", {}).get("schemas", {})
    found: set[tuple[str, str]] = set()
    for path, operations in spec["paths"].items():
        if not path.startswith(("/api/", "/v1/")):
            continue
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status == "422":  # FastAPI's validation error: the request's own fields
                    continue
                for content in response.get("content", {}).values():
                    found |= set(_properties(content.get("schema", {}), components, "", set()))
    return found


def test_no_typed_api_answer_has_a_path_property() -> None:
    found = _answer_properties()
    # The walk reaches the answers that used to carry a path, and real ones at that.
    owners = {owner for owner, _ in found}
    assert {"VersionPublic", "JobPublic", "DatasetPublic", "ExportPublic", "ModelPublic"} <= owners
    offending = sorted(p for p in found if PATH_LIKE.search(p[1]) and p not in ALLOWED)
    assert not offending, offending
    assert ALLOWED <= found, "an allowed pair no longer exists: drop it from ALLOWED"


def test_the_walk_sees_a_path_property_when_there_is_one() -> None:
    components = {
        "Outer": {
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Inner"}}
            }
        },
        "Inner": {"properties": {"adapter_path": {"type": "string"}, "run_dir": {}}},
    }
    found = _properties({"$ref": "#/components/schemas/Outer"}, components, "", set())
    assert [p for p in found if PATH_LIKE.search(p[1])] == [
        ("Inner", "adapter_path"),
        ("Inner", "run_dir"),
    ]


def test_versions_and_job_results_leave_server_paths_out(client, db_session, tmp_path) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "Paths"}).json()
    content = b"".join(b'{"instruction": "q%d", "output": "a"}\n' % i for i in range(12))
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    created = client.post(f"/api/projects/{project['id']}/jobs", json={"dataset_id": dataset["id"]})
    assert created.status_code == 201, created.text
    job = created.json()
    secret = tmp_path / "runs" / str(job["id"])
    # What a finished run records (workers/training/result.py, workers/tasks/train.py).
    result = {
        "status": "completed",
        "steps": 3,
        "version": 1,
        "adapter_path": str(secret / "adapter"),
        "checkpoint_path": str(secret / "checkpoints" / "step-3"),
        "info": {"device": "cpu", "initialized_from": str(secret / "parent"), "data": {"rows": 1}},
    }
    db_session.execute(update(TrainingJob).where(TrainingJob.id == job["id"]).values(result=result))
    db_session.add(
        ModelVersion(
            project_id=project["id"],
            job_id=job["id"],
            version=1,
            adapter_path=str(secret / "adapter"),
            base_model=project["base_model"],
            config={},
            dataset_sha256=dataset["sha256"],
            dataset_name=dataset["name"],
            libraries={},
            metrics={},
        )
    )
    db_session.commit()

    answers = {
        "job": client.get(f"/api/jobs/{job['id']}"),
        "jobs": client.get(f"/api/projects/{project['id']}/jobs"),
        "versions": client.get(f"/api/projects/{project['id']}/versions"),
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, name
        assert str(tmp_path) not in answer.text, name
    kept = answers["job"].json()["result"]
    assert kept == {
        "status": "completed",
        "steps": 3,
        "version": 1,
        "info": {"device": "cpu", "data": {"rows": 1}},
    }
    [version] = answers["versions"].json()["data"]
    assert version["version"] == 1 and "adapter_path" not in version


def test_the_job_stream_leaves_server_paths_out() -> None:
    """The `start` event carries the run's info to /api/jobs/{id}/events, minus its paths."""
    event = JobStart(total_steps=3, info={"device": "cpu", "initialized_from": "/srv/runs/1"})
    assert json.loads(event.model_dump_json())["info"] == {"device": "cpu"}
