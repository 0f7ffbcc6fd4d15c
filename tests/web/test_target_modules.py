"""LoRA target checkboxes list the base model's own linear layers, read from its weight files."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.services.model_modules import COMMON_TARGETS, linear_module_names, target_choices

LLAMA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_llama_names_come_from_the_weights(tiny_model_dir: Path) -> None:
    assert sorted(linear_module_names(tiny_model_dir)) == sorted(LLAMA)


def test_other_families_show_their_own_names(tmp_path: Path, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    # Phi-3 fuses q/k/v and gate/up: a fixed Llama list would offer names it does not have.
    from tests.inference.helpers import build_family_model

    folder = build_family_model(tmp_path / "phi3", tiny_tokenizer, "phi3")
    names = linear_module_names(folder)
    assert set(names) == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert not {"lm_head", "embed_tokens", "norm"} & set(names)


def test_unreadable_or_absent_weights_fall_back_to_common_names(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"\xff" * 16)  # an absurd header length
    assert target_choices(f"local:{broken}", tmp_path) == (list(COMMON_TARGETS), False)
    # A built-in model whose files are not prepared yet.
    assert target_choices("smollm2-135m-instruct", tmp_path / "empty") == (
        list(COMMON_TARGETS),
        False,
    )


def test_training_form_offers_the_models_names(client, tmp_path: Path, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from tests.inference.helpers import build_family_model

    folder = build_family_model(tmp_path / "phi3", tiny_tokenizer, "phi3")
    model = client.post("/api/models", json={"path": str(folder)}).json()
    project = client.post("/api/projects", json={"name": "phi", "base_model": model["id"]}).json()
    rows = (
        b'[{"instruction": "Say hi", "output": "Hi"}, {"instruction": "Say bye", "output": "Bye"}]'
    )
    upload = client.post(
        f"/api/projects/{project['id']}/datasets", files={"file": ("tiny.json", rows)}
    )
    assert upload.status_code == 201, upload.text
    page = client.get(f"/projects/{project['id']}/runs/new")
    assert page.status_code == 200
    assert 'value="qkv_proj"' in page.text and 'value="gate_up_proj"' in page.text
    assert 'value="q_proj"' not in page.text
    assert "Names read from this model" in page.text
