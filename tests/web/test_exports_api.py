"""The exports API without a worker: formats listed, bad input refused, scoping, cache reuse and
HTTP Range on a finished file (rows and files written directly, as a finished task leaves
them)."""

from __future__ import annotations

import hashlib
import os

import pytest

from app.models import Export, JobStatus, ModelVersion
from tests.helpers.versions import add_version


@pytest.fixture
def version(client, db_session) -> ModelVersion:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "export"}).json()
    add_version(db_session, project["id"], 1, "/nowhere/adapter", "smollm2-135m-instruct")
    return db_session.query(ModelVersion).filter_by(project_id=project["id"]).one()


def finished_file(db_session, version: ModelVersion, fmt: str, content: bytes) -> Export:  # type: ignore[no-untyped-def]
    from app.config import get_settings

    folder = get_settings().paths.export_dir(version.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{fmt}.bin").write_bytes(content)
    export = Export(
        version_id=version.id,
        format=fmt,
        status=JobStatus.SUCCEEDED,
        file_name=f"{fmt}.bin",
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        verification={"ok": True},
    )
    db_session.add(export)
    db_session.commit()
    return export


def test_every_format_is_listed_and_bad_input_is_refused(client, version) -> None:  # type: ignore[no-untyped-def]
    listing = client.get(f"/api/versions/{version.id}/exports").json()
    assert [e["format"] for e in listing["data"]] == [
        "adapter", "merged", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m",
    ]  # fmt: skip
    assert all(e["status"] == "none" for e in listing["data"])
    assert listing["name"] == "export:v1"
    bad = client.post(f"/api/versions/{version.id}/exports", json={"format": "onnx"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "format"
    assert client.get(f"/api/versions/{version.id}/download?format=adapter").status_code == 404
    assert client.get("/api/versions/999999/exports").status_code == 404


def test_a_finished_export_is_reused_and_served_with_range(client, db_session, version) -> None:  # type: ignore[no-untyped-def]
    content = os.urandom(100_000)
    finished_file(db_session, version, "adapter", content)
    again = client.post(f"/api/versions/{version.id}/exports", json={"format": "adapter"})
    assert again.status_code == 200  # cached: nothing queued
    body = again.json()
    assert body["status"] == "succeeded" and body["sha256"] == hashlib.sha256(content).hexdigest()
    assert db_session.query(Export).filter_by(version_id=version.id).count() == 1

    url = body["download_url"]
    whole = client.get(url)
    assert whole.content == content and whole.headers["accept-ranges"] == "bytes"
    assert 'filename="export-v1-adapter.zip"' in whole.headers["content-disposition"]
    part = client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == content[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(content)}"
    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == content[-10:]


def test_a_missing_file_is_exported_again(client, db_session, version) -> None:  # type: ignore[no-untyped-def]
    from app.config import get_settings

    export = finished_file(db_session, version, "merged", b"x")
    (get_settings().paths.export_dir(version.id) / export.file_name).unlink()
    response = client.post(f"/api/versions/{version.id}/exports", json={"format": "merged"})
    assert response.status_code == 202 and response.json()["status"] in ("queued", "failed")


def test_the_modelfile_downloads_beside_a_gguf(client, db_session, version) -> None:  # type: ignore[no-untyped-def]
    from app.config import get_settings

    export = finished_file(db_session, version, "gguf-q8_0", b"GGUF")
    folder = get_settings().paths.export_dir(version.id)
    url = f"/api/versions/{version.id}/download?format=gguf-q8_0&part=modelfile"
    assert client.get(url).status_code == 404  # none written (an unsupported chat format)
    (folder / export.file_name).with_suffix(".Modelfile").write_text("FROM ./x.gguf\n")
    response = client.get(url)
    assert response.status_code == 200 and response.text == "FROM ./x.gguf\n"
    assert 'filename="Modelfile"' in response.headers["content-disposition"]
