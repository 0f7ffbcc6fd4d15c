"""Exports through the platform: POST → `export` queue (the main worker) → file, sha256 and
verification → download; cached on a second request; `tunelab export` from the command line.

The base is the tiny random Llama; v1 a real PEFT adapter with random non-zero weights."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.versions import add_version


@pytest.fixture
def version(client, tiny_model_dir, db_session, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from app.models import ModelVersion
    from tests.inference.helpers import build_adapter

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "ship", "base_model": model["id"]}).json()
    adapter = build_adapter(tiny_model_dir, tmp_path / "adapter", seed=1)
    add_version(db_session, project["id"], 1, adapter, model["id"], dataset_name="rows.jsonl")
    row = db_session.query(ModelVersion).filter_by(project_id=project["id"]).one()
    return {"id": row.id, "project": project}


def export(client, version_id: int, fmt: str, timeout: float = 180) -> dict:  # type: ignore[no-untyped-def]
    response = client.post(f"/api/versions/{version_id}/exports", json={"format": fmt})
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = client.get(f"/api/versions/{version_id}/exports").json()["data"]
        row = next(r for r in rows if r["format"] == fmt)
        if row["status"] in ("succeeded", "failed"):
            return row
        time.sleep(0.3)
    raise AssertionError(f"export {fmt} did not finish")


def test_adapter_and_merged_exports_download_and_are_cached(client, worker, version) -> None:  # type: ignore[no-untyped-def]
    adapter = export(client, version["id"], "adapter")
    assert adapter["status"] == "succeeded", adapter
    download = client.get(adapter["download_url"])
    assert hashlib.sha256(download.content).hexdigest() == adapter["sha256"]
    assert len(download.content) == adapter["size_bytes"]
    names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(names)
    assert "chat_template.jinja" in names
    again = client.post(f"/api/versions/{version['id']}/exports", json={"format": "adapter"})
    assert again.status_code == 200 and again.json()["sha256"] == adapter["sha256"]

    merged = export(client, version["id"], "merged")
    assert merged["status"] == "succeeded", merged
    check = merged["verification"]
    assert check["check"] == "merged_logits" and check["ok"] and check["max_abs_diff"] <= 1e-4
    names = zipfile.ZipFile(io.BytesIO(client.get(merged["download_url"]).content)).namelist()
    assert "config.json" in names and any(n.endswith(".safetensors") for n in names)


def test_tunelab_export_writes_the_file_without_the_web(version, platform_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "v1-adapter.zip"
    tunelab = Path(sys.executable).parent / "tunelab"
    result = subprocess.run(
        [str(tunelab), "export", f"{version['project']['slug']}:v1", "--format", "adapter",
         "--out", str(out)],
        env={**os.environ, **platform_env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert hashlib.sha256(out.read_bytes()).hexdigest() in result.stdout
    assert "adapter_model.safetensors" in zipfile.ZipFile(out).namelist()
    missing = subprocess.run(
        [str(tunelab), "export", "nope:v9", "--format", "adapter", "--out", str(out)],
        env={**os.environ, **platform_env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert missing.returncode == 1 and "no version nope:v9" in missing.stderr
