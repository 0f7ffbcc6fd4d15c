"""Token statistics computed by a real worker with the project's base-model tokenizer."""

from __future__ import annotations

import json
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "zhangjiajie"


def test_stats_match_the_training_tokenization(
    client, worker, tiny_model_dir, tiny_tokenizer
) -> None:  # type: ignore[no-untyped-def]
    from workers.ml.chat_format import IGNORE_INDEX, tokenize_conversation

    model = client.post("/api/models", json={"path": str(tiny_model_dir)}).json()
    project = client.post("/api/projects", json={"name": "zjj", "base_model": model["id"]}).json()
    response = client.post(
        f"/api/projects/{project['id']}/datasets",
        files={"file": ("train.json", (EXAMPLES / "train.json").read_bytes())},
    )
    assert response.status_code == 201, response.text
    dataset = response.json()

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        dataset = client.get(f"/api/datasets/{dataset['id']}").json()
        if dataset["stats_status"] in ("ready", "failed"):
            break
        time.sleep(0.3)
    assert dataset["stats_status"] == "ready", dataset["stats_error"]
    stats = dataset["stats"]

    rows = [
        json.loads(line)["messages"]
        for line in client.get(f"/api/datasets/{dataset['id']}/files/normalized").text.splitlines()
    ]
    examples = [tokenize_conversation(tiny_tokenizer, m) for m in rows]
    lengths = [len(e.input_ids) for e in examples]
    assert stats["rows"] == len(rows) == 225
    assert stats["tokens"]["total"] == sum(lengths)
    assert stats["tokens"]["max"] == max(lengths)
    limit = stats["max_length"]
    assert stats["over_max_length"] == sum(n > limit for n in lengths)
    trainable = sum(sum(1 for t in e.labels[:limit] if t != IGNORE_INDEX) for e in examples)
    assert stats["trainable_tokens"] == trainable
    assert sum(stats["histogram"]["counts"]) == len(rows)

    page = client.get(f"/datasets/{dataset['id']}/stats")
    assert 'data-status="ready"' in page.text and "data-histogram" in page.text


def test_stats_fail_with_a_reason_when_the_model_is_gone(
    client, worker, tmp_path, tiny_model_dir
) -> None:  # type: ignore[no-untyped-def]
    import shutil

    folder = tmp_path / "soon-gone"
    shutil.copytree(tiny_model_dir, folder)
    model = client.post("/api/models", json={"path": str(folder)}).json()
    project = client.post("/api/projects", json={"name": "gone", "base_model": model["id"]}).json()
    shutil.rmtree(folder)
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets",
        files={"file": ("a.jsonl", b'{"instruction": "a", "output": "b"}\n')},
    ).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dataset = client.get(f"/api/datasets/{dataset['id']}").json()
        if dataset["stats_status"] in ("ready", "failed"):
            break
        time.sleep(0.3)
    assert dataset["stats_status"] == "failed"
    assert dataset["stats_error"] == "local_folder_not_found"  # a code, rendered by the page
    assert "soon-gone" in dataset["stats"]["error_params"]["path"]
    page = client.get(f"/datasets/{dataset['id']}/stats", headers={"Accept-Language": "zh-CN"})
    assert "服务器上没有这个文件夹" in page.text and "soon-gone" in page.text
