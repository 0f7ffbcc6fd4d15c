"""A full disk while saving a checkpoint, an adapter or an export: the job fails with
`disk_full` (the free space, no server path), no half-written file is kept or becomes a version,
the space the failed write took is given back, and once space is freed the job resumes from
its last complete checkpoint.

The disk is real: a size-limited tmpfs mounted on the data folder's `runs` (or a version's
export folder), so the real writers (torch.save, safetensors, zipfile) meet a real ENOSPC in the
real worker processes, each failing in its own words. It needs the right to mount (root, as CI
runs); elsewhere these tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from app.models import Export
from tests.helpers.faults import can_mount, small_filesystem
from tests.helpers.services import WorkerProcess
from tests.workers.test_duplicate_delivery import adapter_version
from tests.workers.test_job_failures import make_project
from tests.workers.test_training_jobs import FAST, finished, wait_job

pytestmark = pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root")

KiB = 1024
LEFT_FREE = 32 * KiB  # room for log lines; a checkpoint of the tiny model takes ~150 KiB


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all of `folder`'s disk but `leave` bytes (another program's data)."""
    balloon = folder / "balloon"
    with balloon.open("wb") as handle:
        handle.write(b"\0" * (shutil.disk_usage(folder).free - leave))
    return balloon


def by_step(checkpoints: Iterable[Path]) -> list[Path]:
    """step-8 before step-10: by number, not by name (a name sort put step-10 first, and the
    test then expected the resume from step 8 when the newest checkpoint was 10)."""
    return sorted(checkpoints, key=lambda p: int(p.name.split("-")[1]))


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.is_file() else ""


def hidden_entries(folder: Path) -> list[Path]:
    """Temp names (`.step-4.tmp`, `.adapter.tmp`, `.x.zip.tmp`...) anywhere under `folder`."""
    return list(folder.rglob(".*"))


def test_checkpoint_on_a_full_disk_fails_the_job_and_resumes_after(  # type: ignore[no-untyped-def]
    client, platform_env, train_worker, tiny_model_dir
) -> None:
    runs = Path(platform_env["TUNELAB_DATA_DIR"]) / "runs"
    with small_filesystem(runs, "16m"):
        project, dataset = make_project(client, tiny_model_dir)
        job = client.post(
            f"/api/projects/{project['id']}/jobs",
            json={"dataset_id": dataset["id"], "config": {**FAST, "epochs": 100}},
        ).json()
        run = runs / str(job["id"])
        wait_job(client, job["id"], lambda j: j["status"] == "running" and j["step"] >= 5)
        client.post(f"/api/jobs/{job['id']}/cancel")  # keeps its checkpoints
        assert wait_job(client, job["id"], finished)["status"] == "cancelled"
        kept = [p.name for p in by_step((run / "checkpoints").iterdir())]
        assert kept and not hidden_entries(run)

        # The disk fills up (something else wrote to it); the resumed run's next save fails.
        balloon = fill(runs, LEFT_FREE)
        assert client.post(f"/api/jobs/{job['id']}/resume").json()["status"] == "queued"
        job = wait_job(client, job["id"], finished)
        assert job["status"] == "failed" and job["error_code"] == "disk_full", job
        assert set(job["error_params"]) == {"free"} and "/" not in job["error_params"]["free"]
        assert "disk is full" in job["error"] and str(runs) not in job["error"]
        page = client.get(f"/jobs/{job['id']}", headers={"Accept-Language": "zh-CN"}).text
        assert "磁盘已满" in page

        # Nothing half-written is left, the space it took is back, the checkpoints before it
        # are whole, and no adapter or version came of it.
        assert not hidden_entries(run)
        assert shutil.disk_usage(runs).free >= LEFT_FREE - 16 * KiB  # the log grew a little
        checkpoints = by_step((run / "checkpoints").iterdir())
        assert [p.name for p in checkpoints] == kept
        for checkpoint in checkpoints:
            assert (checkpoint / "state.json").is_file()
            assert (checkpoint / "adapter" / "adapter_model.safetensors").is_file()
        assert not (run / "adapter").exists()
        assert client.get(f"/api/projects/{project['id']}/versions").json()["data"] == []

        # Space freed: the job resumes from its last checkpoint and ends with a version.
        balloon.unlink()
        steps_before = max(
            m["step"] for m in client.get(f"/api/jobs/{job['id']}/metrics").json()["data"]
        )
        assert client.post(f"/api/jobs/{job['id']}/resume").json()["status"] == "queued"
        last = int(kept[-1].split("-")[1])
        wait_job(
            client, job["id"], lambda j: j["status"] == "running" and j["step"] >= steps_before + 2
        )
        client.post(f"/api/jobs/{job['id']}/stop")
        job = wait_job(client, job["id"], finished)
        assert job["status"] == "succeeded", job
        # Should this fail, the run's log and the worker's say which run wrote what.
        why = (
            f"kept {kept}\n{tail(run / 'train.log')}\n--- worker ---\n{tail(train_worker.log_path)}"
        )
        assert job["result"]["info"]["resumed_from_step"] == last, why
        [version] = client.get(f"/api/projects/{project['id']}/versions").json()["data"]
        assert version["version"] == 1
        assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_export_on_a_full_disk_fails_cleanly_and_succeeds_after(  # type: ignore[no-untyped-def]
    client, platform_env, db_session, tiny_model_dir, tmp_path
) -> None:
    version = adapter_version(client, db_session, tiny_model_dir, tmp_path)
    folder = Path(platform_env["TUNELAB_DATA_DIR"]) / "exports" / str(version["id"])
    env = dict(os.environ, **platform_env)
    worker = WorkerProcess(env=env, log_path=tmp_path / "main.log", queues="export")
    worker.start()
    try:
        # 256 KiB: the adapter fits, its zip with the tokenizer (3.5 MB) does not.
        with small_filesystem(folder, "256k"):
            row = export_adapter(client, version["id"])
            assert row["status"] == "failed" and row["error_code"] == "disk_full", row
            assert "/" not in row["error_params"]["free"] and str(folder) not in row["error"]
            assert list(folder.iterdir()) == []  # no staged folder, no partial zip
            assert shutil.disk_usage(folder).used < 16 * KiB  # their space is back
            assert db_session.query(Export).one().file_name is None

            # Room enough now (the operator freed space): asked again, it is written.
            subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)
            row = export_adapter(client, version["id"])
            assert row["status"] == "succeeded", row
            assert [p.suffix for p in folder.iterdir()] == [".zip"]
    finally:
        worker.stop()


def export_adapter(client, version_id: int) -> dict:  # type: ignore[no-untyped-def]
    from tests.workers.test_exports import export

    return export(client, version_id, "adapter")  # type: ignore[no-any-return]
