"""The chat-template preview is the worker's own tokenization, row for row and token for token."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def wait_result(client, request_id: str) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        result = client.get(f"/api/previews/{request_id}").json()
        if result["status"] != "pending":
            return result
        time.sleep(0.2)
    raise AssertionError("preview never arrived")


@pytest.mark.parametrize("template", ["", "alpaca"])
def test_preview_equals_training_tokenization(
    client, worker, tiny_model_dir, tiny_tokenizer, template
) -> None:  # type: ignore[no-untyped-def]
    from workers.ml.chat_format import IGNORE_INDEX, tokenize_conversation

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "p", "base_model": model["id"]}).json()
    assert (
        client.patch(
            f"/api/projects/{project['id']}", json={"chat_template": template, "max_length": 256}
        ).status_code
        == 200
    )
    rows = [
        {
            "messages": [
                {"role": "system", "content": "你是张家界导游。"},
                {"role": "user", "content": "天门山怎么去？"},
                {"role": "assistant", "content": "从市区乘天门山索道上山。"},
                {"role": "user", "content": "要多久？"},
                {"role": "assistant", "content": "约 30 分钟。"},
            ]
        },
    ]
    content = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("chat.jsonl", content)}
    ).json()

    request_id = client.post(f"/api/datasets/{dataset['id']}/preview", json={"row": 1}).json()[
        "request_id"
    ]
    result = wait_result(client, request_id)
    assert result["status"] == "ready", result

    expected = tokenize_conversation(
        tiny_tokenizer, rows[0]["messages"], template=template or None, max_length=256
    )
    ids = [t for s in result["segments"] for t in s["token_ids"]]
    flags = [s["carries_loss"] for s in result["segments"] for _ in s["token_ids"]]
    assert ids == expected.input_ids
    assert flags == [label != IGNORE_INDEX for label in expected.labels]
    learned = "".join(s["text"] for s in result["segments"] if s["carries_loss"])
    assert "天门山索道" in learned and "约 30 分钟" in learned
    assert "天门山怎么去" not in learned  # user turns never carry loss

    page = client.get(f"/previews/{request_id}")
    assert '<mark class="loss"' in page.text


def test_failed_preview_reads_in_the_readers_language(
    client, worker, tmp_path, tiny_model_dir
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    folder = tmp_path / "moved-away"
    shutil.copytree(tiny_model_dir, folder)
    model = client.post("/api/models", json={"path": str(folder)}).json()
    project = client.post("/api/projects", json={"name": "p", "base_model": model["id"]}).json()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets",
        files={"file": ("a.jsonl", b'{"instruction": "a", "output": "b"}\n')},
    ).json()
    shutil.rmtree(folder)
    request_id = client.post(f"/api/datasets/{dataset['id']}/preview", json={"row": 1}).json()[
        "request_id"
    ]
    result = wait_result(client, request_id)
    assert result["status"] == "failed" and result["error_code"] == "local_folder_not_found"
    assert "path does not exist" in result["error"]  # the English, for the API
    page = client.get(f"/previews/{request_id}", headers={"Accept-Language": "zh-CN"}).text
    assert "无法生成预览：服务器上没有这个文件夹" in page and "path does not exist" in page


def test_preview_row_out_of_range(client, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "p"}).json()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets",
        files={"file": ("a.jsonl", b'{"instruction": "a", "output": "b"}\n')},
    ).json()
    response = client.post(f"/api/datasets/{dataset['id']}/preview", json={"row": 5})
    assert response.status_code == 422
    assert "from 1 to 1" in response.json()["error"]["details"][0]["message"]


def test_web_template_names_match_the_workers() -> None:
    from app.services.projects import CHAT_TEMPLATES

    data = yaml.safe_load((ROOT / "workers" / "ml" / "chat_templates.yaml").read_text())
    assert set(CHAT_TEMPLATES) == set(data["templates"])


def test_unknown_template_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    project = client.post("/api/projects", json={"name": "p"}).json()
    response = client.patch(f"/api/projects/{project['id']}", json={"chat_template": "vicuna"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "chat_template"
