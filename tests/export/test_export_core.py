"""The export core: an adapter zip that plain PEFT loads and that answers like the platform, a
merged folder whose logits match base + adapter (and a check that can fail), atomic files."""

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.inference.helpers import build_adapter, build_family_model
from workers.export import (
    ExportFailed,
    atomic_dir,
    export_adapter,
    export_merged,
    sha256_file,
    verify_merged,
    zip_folder,
)
from workers.export import archive as archive_module
from workers.inference import GenerationRequest, InferenceEngine, Scheduler
from workers.ml.chat_format import named_templates

# The base tokenizer's own template is ChatML; the project names another one, so the test can
# tell that the export carries the platform's template and not merely the tokenizer's.
TEMPLATE = "alpaca"
MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "The capital of France is Paris. 北京是中国的首都。Tell me more!"},
]
NEW_TOKENS = 16
DATASET_SHA = "ab" * 32
INFO = {
    "name": "support-v3",
    "base_model": "tiny-llama-test",
    "training_config": {"epochs": 2, "learning_rate": 0.0002, "lora_r": 4},
    "dataset": {"name": "support-chats", "sha256": DATASET_SHA, "rows": 120},
    "metrics": {"eval_loss": 1.2345678, "train_loss": 0.9},
    "library_versions": {"peft": "0.0-test", "torch": "0.0-test"},
}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    return build_family_model(tmp_path_factory.mktemp("base"), tiny_tokenizer, "llama")


@pytest.fixture(scope="module")
def adapter_dir(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_adapter(base_dir, tmp_path_factory.mktemp("adapters") / "good", seed=1)


@pytest.fixture(scope="module")
def merged_dir(
    base_dir: Path, adapter_dir: Path, tiny_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("merged") / "model"
    phases: list[str] = []
    assert (
        export_merged(base_dir, tiny_tokenizer, adapter_dir, TEMPLATE, out, progress=phases.append)
        == out
    )
    assert phases == ["load", "merge", "save"]
    return out


def _unzip(zip_path: Path, folder: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    return folder


def _prompt_ids(tokenizer: Any) -> list[int]:
    """The prompt as a user of the export renders it: the tokenizer's own (exported) template."""
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _generate(model: Any, prompt: list[int]) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
        )
    return out[0, len(prompt) :].tolist()


def _platform_answer(base_dir: Path, adapter_dir: Path, data_dir: Path) -> tuple[list[int], Any]:
    engine = InferenceEngine(data_dir, memory_budget_bytes=1 << 30, device="cpu", dtype="float32")
    engine.register_adapter(str(base_dir), "v3", adapter_dir)
    request = GenerationRequest(
        "export-check",
        str(base_dir),
        "v3",
        MESSAGES,
        temperature=0.0,
        max_new_tokens=NEW_TOKENS,
        template=TEMPLATE,
    )
    prompt = engine.encode_prompt(engine.ensure_base(str(base_dir)), request)
    with Scheduler(engine) as scheduler:
        result = scheduler.submit(request).result(timeout=120)
    return prompt, list(result.token_ids)


def test_adapter_zip_loads_in_plain_peft_and_answers_like_the_platform(
    base_dir: Path, adapter_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before = tiny_tokenizer.chat_template
    phases: list[str] = []
    out = export_adapter(
        adapter_dir,
        tiny_tokenizer,
        TEMPLATE,
        INFO,
        tmp_path / "out" / "v3.zip",
        progress=phases.append,
    )
    assert phases == ["adapter", "tokenizer", "readme", "zip"]
    assert os.listdir(out.parent) == ["v3.zip"]  # the staging folder is gone
    assert tiny_tokenizer.chat_template == before  # the caller's tokenizer is untouched

    folder = _unzip(out, tmp_path / "unzipped")
    names = set(os.listdir(folder))
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= names
    assert {"tokenizer_config.json", "chat_template.jinja"} <= names
    assert sha256_file(folder / "adapter_model.safetensors") == sha256_file(
        adapter_dir / "adapter_model.safetensors"
    )

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template == named_templates()[TEMPLATE] != before
    prompt = _prompt_ids(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    base_answer = _generate(base, prompt)
    exported = _generate(PeftModel.from_pretrained(base, folder).eval(), prompt)

    platform_prompt, platform = _platform_answer(base_dir, adapter_dir, tmp_path / "data")
    assert platform_prompt == prompt
    assert exported == platform
    assert len(set(platform)) > 4  # a varied answer, so the comparison means something
    assert exported != base_answer  # and the adapter changes it

    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "tiny-llama-test" in readme and DATASET_SHA in readme
    assert "PeftModel.from_pretrained" in readme and "loras/support-v3" in readme
    # rank 4 -> the smallest --max-lora-rank vLLM accepts that holds it
    assert "--lora-modules support-v3=./support-v3" in readme and "--max-lora-rank 8" in readme


def test_bin_only_adapter_is_shipped_as_safetensors(
    adapter_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "adapter_config.json").write_bytes((adapter_dir / "adapter_config.json").read_bytes())
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    torch.save(weights, legacy / "adapter_model.bin")

    out = export_adapter(legacy, tiny_tokenizer, None, INFO, tmp_path / "legacy.zip")
    folder = _unzip(out, tmp_path / "unzipped")
    assert "adapter_model.bin" not in os.listdir(folder)
    shipped = load_file(folder / "adapter_model.safetensors")
    assert shipped.keys() == weights.keys()
    assert all(torch.equal(shipped[k], weights[k]) for k in weights)


def test_incomplete_adapter_folder_is_refused(tiny_tokenizer: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportFailed) as caught:
        export_adapter(tmp_path / "empty", tiny_tokenizer, None, INFO, tmp_path / "out" / "a.zip")
    assert caught.value.code == "adapter_missing"
    assert "adapter_config.json" in caught.value.params["missing"]
    assert os.listdir(tmp_path / "out") == []


def test_merged_matches_base_plus_adapter(
    base_dir: Path, adapter_dir: Path, merged_dir: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert {"config.json", "generation_config.json", "chat_template.jinja"} <= set(
        os.listdir(merged_dir)
    )
    assert any(name.endswith(".safetensors") for name in os.listdir(merged_dir))
    config = json.loads((merged_dir / "config.json").read_text())
    assert config["dtype"] == "float32"
    model = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert not any("lora" in name for name, _ in model.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert tokenizer.chat_template == named_templates()[TEMPLATE]

    # tokenizer None: the prompt is rendered with the template the merged folder carries.
    result = verify_merged(base_dir, adapter_dir, merged_dir, None, MESSAGES)
    assert result["ok"] is True
    assert result["max_abs_diff"] <= 1e-4
    assert result["tolerance"] == 1e-4
    assert result["prompt_tokens"] == len(_prompt_ids(tokenizer))
    json.dumps(result)  # stored as JSON by the caller


def test_verify_fails_for_a_different_adapter(
    base_dir: Path, merged_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    wrong = build_adapter(base_dir, tmp_path / "wrong", seed=7)
    result = verify_merged(
        base_dir, wrong, merged_dir, tiny_tokenizer, MESSAGES, chat_template=TEMPLATE
    )
    assert result["ok"] is False
    assert result["max_abs_diff"] > 1e-2


def test_merging_from_a_loaded_model_leaves_it_untouched(
    base_dir: Path, adapter_dir: Path, tiny_tokenizer: Any, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    out = export_merged(loaded, tiny_tokenizer, adapter_dir, TEMPLATE, tmp_path / "m")
    after = loaded.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert verify_merged(
        loaded, adapter_dir, out, tiny_tokenizer, MESSAGES, chat_template=TEMPLATE
    )["ok"]
    # An existing output is refused, not mixed into; replace=True swaps it whole.
    with pytest.raises(ExportFailed):
        export_merged(loaded, tiny_tokenizer, adapter_dir, TEMPLATE, out)
    (out / "stale.txt").write_text("old export")
    export_merged(loaded, tiny_tokenizer, adapter_dir, TEMPLATE, out, replace=True)
    assert "stale.txt" not in os.listdir(out)
    assert sorted(os.listdir(tmp_path)) == ["m"]


# -- atomic files ---------------------------------------------------------------------------


def _sample_folder(root: Path) -> Path:
    folder = root / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second " * 1000)
    (folder / "a.safetensors").write_bytes(os.urandom(4096))
    (folder / "sub" / "c.json").write_text('{"c": 1}')
    return folder


def _failing_copy(monkeypatch: pytest.MonkeyPatch, fail_on_call: int) -> None:
    """Make the zip writer die halfway through its nth entry, like a full disk would."""
    real = archive_module._add_file
    calls = {"n": 0}

    def add(archive: zipfile.ZipFile, path: Path, arcname: str) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            with archive.open(arcname, "w") as dst:
                dst.write(path.read_bytes()[:100])
                raise OSError(28, "No space left on device")
        real(archive, path, arcname)

    monkeypatch.setattr(archive_module, "_add_file", add)


def test_zip_is_deterministic_and_complete(tmp_path: Path) -> None:
    folder = _sample_folder(tmp_path)
    first = zip_folder(folder, tmp_path / "out" / "one.zip")
    os.utime(folder / "b.txt", (1_000_000_000, 1_000_000_000))  # a different mtime
    second = zip_folder(folder, tmp_path / "out" / "two.zip")
    assert sha256_file(first) == sha256_file(second)
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == ["a.safetensors", "b.txt", "sub/c.json"]
        assert archive.testzip() is None
        assert archive.read("sub/c.json") == b'{"c": 1}'


def test_failed_zip_leaves_no_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _sample_folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    _failing_copy(monkeypatch, fail_on_call=2)
    with pytest.raises(OSError, match="No space"):
        zip_folder(folder, out / "fresh.zip")
    assert os.listdir(out) == []

    (out / "old.zip").write_bytes(b"previous export")
    _failing_copy(monkeypatch, fail_on_call=1)
    with pytest.raises(OSError):
        zip_folder(folder, out / "old.zip")
    assert os.listdir(out) == ["old.zip"]
    assert (out / "old.zip").read_bytes() == b"previous export"


def test_failed_adapter_export_leaves_nothing(
    adapter_dir: Path, tiny_tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_copy(monkeypatch, fail_on_call=3)
    with pytest.raises(OSError):
        export_adapter(adapter_dir, tiny_tokenizer, TEMPLATE, INFO, tmp_path / "out" / "v3.zip")
    assert os.listdir(tmp_path / "out") == []


def test_atomic_dir_removes_a_failed_build(tmp_path: Path) -> None:
    final = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(final) as stage:
        (stage / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("merge failed")
    assert os.listdir(tmp_path) == []
    with atomic_dir(final) as stage:
        (stage / "config.json").write_text("{}")
        assert not final.exists()  # nothing under the final name until the block completes
    assert os.listdir(final) == ["config.json"]
