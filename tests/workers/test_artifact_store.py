"""Scale-out without a shared disk (issue 16): two "machines" share only the database, Redis
and an S3 bucket.

The web runs in this process with its own data dir; machine A runs a training worker and the
main worker (chat, data, exports), machine B a training worker, each with a data dir of its
own; the store is moto's S3 server on loopback (tests/helpers/s3.py). Four jobs on the tiny
model: all succeed, none runs twice, and each version's adapter downloads (the adapter export,
made and served through the store) and chats — from machine A, then, with A's main worker
stopped, from B's. The same greedy answer from both machines shows they used the same adapter.

PostgreSQL only: several machines share a database server, where SQLite is one machine's file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from app.artifacts import MANIFEST, sha256_of
from tests.helpers.projects import project_with_rows
from tests.helpers.s3 import CREDENTIALS, REGION, s3_server
from tests.helpers.services import WorkerProcess, reset_app_caches

pytestmark = pytest.mark.both_databases  # several machines share a database server

ROWS = [{"instruction": f"景点 {i} 在哪里？", "output": f"景点 {i} 在武陵源。"} for i in range(12)]
CONFIG = {"max_length": 48, "epochs": 1, "batch_size": 4, "val_percent": 0, "rank": 2, "alpha": 4}


@pytest.fixture
def store(platform_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    if not platform_env["TUNELAB_DATABASE_URL"].startswith("postgresql"):
        pytest.skip("several machines share a database server; SQLite is one machine's file")
    with s3_server(tmp_path) as settings:
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        reset_app_caches()
        yield settings
    reset_app_caches()


def machine(platform_env: dict[str, str], store: dict[str, str], root: Path, queues: str) -> Any:
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        **platform_env,
        **store,
        "TUNELAB_DATA_DIR": str(root / "data"),
        "TUNELAB_JOB_HEARTBEAT_S": "1",  # a lost machine is noticed within seconds
        # Greedy answers compared across machines: one engine, no GGUF built on the side.
        "TUNELAB_CHAT_ENGINE": "transformers",
    }
    return WorkerProcess(env=env, log_path=root / f"{queues.replace(',', '-')}.log", queues=queues)


def wait(client, path: str, done, timeout: float = 240) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if done(body):
            return body
        time.sleep(0.3)
    raise AssertionError(f"{path} never finished: {client.get(path).json()}")


def chat(client, model: str) -> str:  # type: ignore[no-untyped-def]
    response = client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "景点 3 在哪里？"}],
              "max_tokens": 8, "temperature": 0},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_two_machines_share_only_the_database_redis_and_the_store(  # type: ignore[no-untyped-def]
    platform_env, store, tmp_path, tiny_model_dir, db_session
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.models import TrainingJob

    web_dir = Path(platform_env["TUNELAB_DATA_DIR"])
    a_train = machine(platform_env, store, tmp_path / "a", "train,eval")
    b_train = machine(platform_env, store, tmp_path / "b", "train,eval")
    a_main = machine(platform_env, store, tmp_path / "a", "infer,data,export")
    b_main = machine(platform_env, store, tmp_path / "b", "infer,data,export")
    started = [a_train, b_train, a_main]
    for worker in started:
        worker.launch()
    try:
        for worker in started:
            worker.wait_ready()
        with TestClient(create_app()) as client:
            project, dataset = project_with_rows(client, ROWS, "store", tiny_model_dir)
            jobs = []
            for seed in range(4):
                created = client.post(
                    f"/api/projects/{project['id']}/jobs",
                    json={"dataset_id": dataset["id"], "config": {**CONFIG, "seed": seed}},
                )
                assert created.status_code == 201, created.text
                jobs.append(created.json()["id"])
            finished = [
                wait(client, f"/api/jobs/{j}", lambda b: b["status"] not in ("queued", "running"))
                for j in jobs
            ]
            assert [j["status"] for j in finished] == ["succeeded"] * 4, finished

            # None ran twice: each run's files exist on exactly one machine, the one that
            # claimed it, and both machines trained; the web's data dir holds no run at all.
            machines: dict[int, str] = {}
            claimers: dict[str, set[str]] = {}
            for job_id in jobs:
                where = [
                    m for m in ("a", "b") if (tmp_path / m / "data/runs" / str(job_id)).is_dir()
                ]
                assert len(where) == 1, (job_id, where)
                machines[job_id] = where[0]
                claimed = db_session.get(TrainingJob, job_id)
                assert claimed is not None and claimed.worker
                claimers.setdefault(where[0], set()).add(claimed.worker)
                steps = [
                    m["step"] for m in client.get(f"/api/jobs/{job_id}/metrics").json()["data"]
                ]
                assert steps == sorted(set(steps)), steps  # every step once
            assert set(machines.values()) == {"a", "b"}, machines
            # One worker per machine claimed its jobs, and no worker claimed for both.
            assert all(len(names) == 1 for names in claimers.values())
            assert claimers["a"] != claimers["b"]
            assert not (web_dir / "runs").exists()

            versions = client.get(f"/api/projects/{project['id']}/versions").json()["data"]
            assert len(versions) == 4
            answers_a = {}
            for version in versions:
                # The adapter download: made by machine A's export worker from the store's copy
                # of the adapter, served by the web from the store.
                requested = client.post(
                    f"/api/versions/{version['id']}/exports", json={"format": "adapter"}
                )
                assert requested.status_code in (200, 202), requested.text
                wait(
                    client,
                    f"/api/versions/{version['id']}/exports",
                    lambda b: (
                        next(e for e in b["data"] if e["format"] == "adapter")["status"]
                        in ("succeeded", "failed")
                    ),
                )
                download = client.get(f"/api/versions/{version['id']}/download?format=adapter")
                assert download.status_code == 200, download.text
                with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
                    names = archive.namelist()
                    weights = next(n for n in names if n.endswith("adapter_model.safetensors"))
                    (tmp_path / "w.safetensors").write_bytes(archive.read(weights))
                # Byte for byte the adapter its job trained, on whichever machine that was.
                job_id = version["job_id"]
                trained = tmp_path / machines[job_id] / "data/runs" / str(job_id)
                assert sha256_of(tmp_path / "w.safetensors") == sha256_of(
                    trained / "adapter/adapter_model.safetensors"
                )
                answers_a[version["name"]] = chat(client, version["name"])

            # Machine A's main worker goes away; B's answers with the same adapters.
            a_main.stop()
            b_main.start()
            started.append(b_main)
            for name, answer in answers_a.items():
                assert chat(client, name) == answer, name
            assert (tmp_path / "b/data/runs").is_dir()
    finally:
        for worker in started:
            worker.stop()


def published_checkpoints(store: dict[str, str], job_id: int) -> list[int]:
    """The checkpoint steps the store's manifest of a run's checkpoints lists (read with boto3,
    as another machine would see them)."""
    import boto3

    bucket, _, prefix = store["TUNELAB_ARTIFACTS_URL"].removeprefix("s3://").partition("/")
    client = boto3.client(
        "s3", endpoint_url=store["TUNELAB_ARTIFACTS_ENDPOINT"], region_name=REGION, **CREDENTIALS
    )
    try:
        body = client.get_object(
            Bucket=bucket, Key=f"{prefix}/runs/{job_id}/checkpoints/{MANIFEST}"
        )["Body"].read()
    except client.exceptions.NoSuchKey:
        return []
    names = {rel.split("/")[0] for rel in json.loads(body)}
    return sorted(int(n.removeprefix("step-")) for n in names if n.startswith("step-"))


def test_a_run_lost_with_its_machine_resumes_elsewhere_from_its_published_checkpoint(  # type: ignore[no-untyped-def]
    platform_env, store, tmp_path, tiny_model_dir, monkeypatch
) -> None:
    """Checkpoints reach the store while the run trains, not only when it ends: machine A dies
    mid-run with its disk, and machine B resumes from the newest checkpoint A had published."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.setenv("TUNELAB_JOB_LOST_AFTER_S", "6")  # the web's reaper notices A soon
    reset_app_caches()
    a_train = machine(platform_env, store, tmp_path / "a", "train,eval")
    b_train = machine(platform_env, store, tmp_path / "b", "train,eval")
    a_train.start()
    started = [a_train]
    try:
        with TestClient(create_app()) as client:
            project, dataset = project_with_rows(client, ROWS, "lost", tiny_model_dir)
            config = {**CONFIG, "epochs": 100, "checkpoint_every_steps": 2}
            job = client.post(
                f"/api/projects/{project['id']}/jobs",
                json={"dataset_id": dataset["id"], "config": config},
            ).json()
            path = f"/api/jobs/{job['id']}"

            # Two checkpoints in the store while A is still training.
            deadline = time.monotonic() + 240
            while len(published_checkpoints(store, job["id"])) < 2:
                assert time.monotonic() < deadline, client.get(path).json()
                assert client.get(path).json()["status"] in ("queued", "running")
                time.sleep(0.2)

            a_train.kill()  # the machine is lost, and its disk with it
            shutil.rmtree(tmp_path / "a" / "data")
            newest = published_checkpoints(store, job["id"])[-1]
            failed = wait(client, path, lambda b: b["status"] == "failed", timeout=60)
            assert failed["error_code"] == "worker_lost", failed

            b_train.start()
            started.append(b_train)
            assert client.post(f"{path}/resume").json()["status"] == "queued"
            wait(client, path, lambda b: b["status"] == "running" and b["step"] >= newest + 2)
            client.post(f"{path}/stop")
            done = wait(client, path, lambda b: b["status"] not in ("queued", "running"))
            assert done["status"] == "succeeded", done
            assert done["result"]["info"]["resumed_from_step"] == newest >= 2
            assert not (tmp_path / "a" / "data").exists()  # B had nothing of A's but the store
    finally:
        for worker in started:
            worker.stop()
        monkeypatch.delenv("TUNELAB_JOB_LOST_AFTER_S")  # not left in cached settings
        reset_app_caches()
