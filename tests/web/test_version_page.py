"""The version page and its Exports card, without a worker: facts and lineage, both languages,
the Export form (queued, or failed when the queue is unreachable), ready / failed / running rows
written directly as the export task leaves them, 404 and scoping."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from app.models import Evaluation, Export, JobStatus, ModelVersion, Project, User
from app.services.exports import FORMATS
from tests.helpers.versions import add_version

ZH = {"lang": "zh-CN"}
SHA = "ab" * 32
CONFIG = {"rank": 8, "alpha": 16, "learning_rate": 0.0002, "epochs": 3}
METRICS = {
    "train_loss": 1.2345,
    "last_train_loss": 1.1,
    "eval_loss": 1.5,
    "best_step": 40,
    "best_eval_loss": 1.42,
    "adapter_step": 40,
    "early_stopped_at_step": 60,
    "steps": 60,
    "epochs": 3.0,
    "tokens_seen": 12345,
    "elapsed_s": 75.0,
}


@pytest.fixture
def project(client) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return client.post("/api/projects", json={"name": "Guide"}).json()


@pytest.fixture
def version(db_session, project) -> ModelVersion:  # type: ignore[no-untyped-def]
    """v2 of the project, continued from v1, with metrics and a config."""
    # As the training task records them (the project page reads both losses).
    v1_metrics = {"train_loss": 2.0, "eval_loss": None}
    add_version(
        db_session, project["id"], 1, "/nowhere/v1", "smollm2-135m-instruct", metrics=v1_metrics
    )
    parent = db_session.query(ModelVersion).filter_by(project_id=project["id"], version=1).one()
    add_version(
        db_session, project["id"], 2, "/nowhere/v2", "smollm2-135m-instruct",
        config=CONFIG, metrics=METRICS, dataset_name="guide.jsonl", dataset_sha256=SHA,
        libraries={"peft": "0.17.1"}, parent_id=parent.id, stopped_early=True,
    )  # fmt: skip
    return db_session.query(ModelVersion).filter_by(project_id=project["id"], version=2).one()


def add_export(db_session, version: ModelVersion, fmt: str, **fields: Any) -> Export:  # type: ignore[no-untyped-def]
    export = Export(version_id=version.id, format=fmt, **fields)
    db_session.add(export)
    db_session.commit()
    return export


def finished_file(db_session, version, fmt: str, content: bytes, check: dict[str, Any]) -> Export:  # type: ignore[no-untyped-def]
    """A succeeded export with its file on disk, as run_export leaves it."""
    from app.config import get_settings

    folder = get_settings().paths.export_dir(version.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{fmt}.zip").write_bytes(content)
    return add_export(
        db_session, version, fmt, status=JobStatus.SUCCEEDED, file_name=f"{fmt}.zip",
        size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(),
        verification=check,
    )  # fmt: skip


def row(html: str, fmt: str) -> str:
    """The HTML of one format's row in the Exports card."""
    start = html.index(f'<li class="export-row" id="export-{fmt}"')
    return html[start : html.index("</li>", start)]


def test_the_page_shows_the_version_in_both_languages(client, db_session, project, version) -> None:  # type: ignore[no-untyped-def]
    evaluation = Evaluation(
        project_id=project["id"], source_name="heldout.json", source_sha256="0" * 64,
        versions=["base", "v2"], settings={}, status=JobStatus.SUCCEEDED,
        results=[{"version": "v2", "perplexity": 12.345, "bleu4": 5.61, "rougeL": 20.14}],
    )  # fmt: skip
    db_session.add(evaluation)
    db_session.commit()

    page = client.get(f"/versions/{version.id}")
    assert page.status_code == 200
    html = page.text
    assert f'<a href="/projects/{project["id"]}">Guide</a> / <span>v2</span>' in html
    assert "Version v2" in html and "guide:v2" in html
    assert "guide.jsonl" in html and SHA in html
    assert "v2 ← v1" in html  # the lineage chain
    assert "lowest eval loss 1.420 at step 40" in html and "early stop at step 60" in html
    assert "1.2345" in html and "60 steps · 3 epochs · 12,345 tokens" in html
    assert f'href="/evaluations/{evaluation.id}"' in html and "Perplexity 12.35" in html
    assert "learning_rate" in html and "0.17.1" in html  # config and libraries, folded
    assert 'href="/jobs/' not in html  # no run recorded for this version: no link to one
    assert f'action="/projects/{project["id"]}/chat"' in html and 'value="v2"' in html
    # Every format, in FORMATS order, none exported yet, nothing polling.
    positions = [html.index(f'id="export-{fmt}"') for fmt in FORMATS]
    assert positions == sorted(positions)
    assert html.count("Not exported") == len(FORMATS) and 'id="exports-empty"' in html
    assert "every 2s" not in html
    assert "text-generation-webui (loras/)" in row(html, "adapter")
    assert "Ollama" in row(html, "gguf-q4_k_m")

    zh = client.get(f"/versions/{version.id}", cookies=ZH).text
    assert "版本 v2" in zh and "导出" in zh and "未导出" in zh
    assert "v2 ← v1" in zh and "尚未导出任何格式" in zh
    assert "Not exported" not in zh


def test_the_project_page_links_each_version(client, project, version) -> None:  # type: ignore[no-untyped-def]
    html = client.get(f"/projects/{project['id']}").text
    assert f'href="/versions/{version.id}"' in html


def test_export_button_queues_and_rerenders_the_card(client, db_session, version) -> None:  # type: ignore[no-untyped-def]
    htmx = {"HX-Request": "true"}
    response = client.post(
        f"/versions/{version.id}/exports", data={"format": "adapter"}, headers=htmx
    )
    assert response.status_code == 200
    card = response.text
    assert card.lstrip().startswith('<section class="card" id="exports-card"')
    export = db_session.query(Export).filter_by(version_id=version.id, format="adapter").one()
    # Queued on the test Redis; failed (queue_unavailable) only where no Redis answers.
    assert export.status in ("queued", "failed")
    adapter = row(card, "adapter")
    assert f'data-state="{export.status}"' in adapter
    if export.status == "queued":
        assert 'hx-trigger="every 2s"' in card and "Waiting for a worker" in adapter
        assert f'hx-get="/versions/{version.id}/exports"' in card
        assert 'data-state="none"' in row(card, "merged")  # the others still offer Export
        # The poll returns the same card; asking again while queued queues nothing new.
        assert 'data-state="queued"' in client.get(f"/versions/{version.id}/exports").text
        client.post(f"/versions/{version.id}/exports", data={"format": "adapter"}, headers=htmx)
        assert db_session.query(Export).filter_by(version_id=version.id).count() == 1
    else:
        assert "every 2s" not in card and "Try again" in adapter

    # Without htmx (no JavaScript) the form posts and comes back to the page.
    plain = client.post(
        f"/versions/{version.id}/exports", data={"format": "merged"}, follow_redirects=False
    )
    assert plain.status_code == 303
    assert plain.headers["location"] == f"/versions/{version.id}#exports-card"

    bad = client.post(f"/versions/{version.id}/exports", data={"format": "onnx"}, headers=htmx)
    assert bad.status_code == 422 and 'id="exports-error"' in bad.text
    assert "Unknown export format" in bad.text


def test_a_ready_export_shows_size_checksum_download_and_check(client, db_session, version) -> None:  # type: ignore[no-untyped-def]
    content = os.urandom(100_000)
    verification = {
        "check": "merged_logits", "max_abs_diff": 2.5e-06, "tolerance": 0.0001, "ok": True,
        "prompt_tokens": 31, "hf_tokens": list(range(40)), "new_figure": 7,
    }  # fmt: skip
    export = finished_file(db_session, version, "merged", content, verification)
    html = client.get(f"/versions/{version.id}").text
    merged = row(html, "merged")
    assert 'data-state="ready"' in merged and "Ready" in merged
    assert "97.7 KiB" in merged
    assert f'<code class="hash" id="export-merged-sha256">{export.sha256}</code>' in merged
    url = f"/api/versions/{version.id}/download?format=merged"
    assert f'href="{url}"' in merged
    assert client.get(url).content == content
    # The check: translated name, figures as name: value, the badge; unknown names as they are.
    assert "Verified" in merged and "merged logits equal base + adapter" in merged
    assert "largest logit difference" in merged and "2.5e-06" in merged
    assert "new_figure" in merged and "<details" in merged  # the long token list is folded
    assert "Export" not in merged.split('class="export-action"')[1].split("</div>")[0]
    assert "every 2s" not in html

    zh = row(client.get(f"/versions/{version.id}", cookies=ZH).text, "merged")
    assert "可下载" in zh and "已校验" in zh and "最大 logit 差" in zh


def test_a_failed_export_shows_its_error_and_a_retry(client, db_session, version) -> None:  # type: ignore[no-untyped-def]
    params = {"tool": "llama.cpp", "command": "./install.sh"}
    add_export(
        db_session, version, "gguf-f16", status=JobStatus.FAILED, error_code="tool_missing",
        error_params=params, error="the gguf-f16 export needs llama.cpp's tools",
        verification={"check": "gguf_greedy_v9", "ok": False, "first_mismatch": 3},
    )  # fmt: skip
    add_export(
        db_session, version, "gguf-q4_k_m", status=JobStatus.RUNNING, progress={"phase": "quantize"}
    )
    add_export(db_session, version, "gguf-q8_0", status=JobStatus.RUNNING, progress={"phase": "x9"})

    html = client.get(f"/versions/{version.id}").text
    failed = row(html, "gguf-f16")
    assert "This export needs llama.cpp, which is not installed on the worker." in failed
    assert "./install.sh" in failed and "Try again" in failed and "Failed" in failed
    assert "Check failed" in failed and "gguf_greedy_v9" in failed  # unknown check: as is
    assert "first differing token" in failed
    # Running rows show their phase (translated when known) and make the card poll.
    assert "Quantizing…" in row(html, "gguf-q4_k_m") and "x9" in row(html, "gguf-q8_0")
    assert html.count('hx-trigger="every 2s"') == 1

    zh = row(client.get(f"/versions/{version.id}", cookies=ZH).text, "gguf-f16")
    assert "此导出需要 llama.cpp，但工作进程所在机器尚未安装。" in zh and "重试" in zh

    # Try again on a failed row queues it afresh (or fails again at once without a queue).
    again = client.post(
        f"/versions/{version.id}/exports",
        data={"format": "gguf-f16"},
        headers={"HX-Request": "true"},
    )
    db_session.expire_all()
    export = db_session.query(Export).filter_by(version_id=version.id, format="gguf-f16").one()
    assert again.status_code == 200 and export.status in ("queued", "failed")
    if export.status == "queued":
        assert export.error_code is None and 'data-state="queued"' in row(again.text, "gguf-f16")


def test_a_deleted_file_offers_to_export_again(client, db_session, version) -> None:  # type: ignore[no-untyped-def]
    from app.config import get_settings

    export = finished_file(db_session, version, "adapter", b"zip", {"check": "files", "ok": True})
    (get_settings().paths.export_dir(version.id) / export.file_name).unlink()
    adapter = row(client.get(f"/versions/{version.id}").text, "adapter")
    assert 'data-state="missing"' in adapter and "Try again" in adapter
    assert "download?format=adapter" not in adapter


def test_unknown_and_other_peoples_versions_are_404(client, db_session, project) -> None:  # type: ignore[no-untyped-def]
    missing = client.get("/versions/999999")
    assert missing.status_code == 404 and "Model version 999999 does not exist." in missing.text

    other = User(username="someone-else")
    db_session.add(other)
    db_session.commit()
    theirs = Project(
        owner_id=other.id, name="Theirs", slug="theirs", base_model="smollm2-135m-instruct"
    )
    db_session.add(theirs)
    db_session.commit()
    add_version(db_session, theirs.id, 1, "/nowhere/theirs", "smollm2-135m-instruct")
    version = db_session.query(ModelVersion).filter_by(project_id=theirs.id).one()

    assert client.get(f"/versions/{version.id}").status_code == 404
    assert client.get(f"/versions/{version.id}/exports").status_code == 404
    post = client.post(f"/versions/{version.id}/exports", data={"format": "adapter"})
    assert post.status_code == 404
    assert db_session.query(Export).filter_by(version_id=version.id).count() == 0
