"""The artifact store (app/artifacts.py): two data dirs that share nothing but an S3 bucket
(moto's server on loopback, its own process) see each other's trees and files whole, fetch
only what changed, and never see a tree before its manifest; the local store moves nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.artifacts import MANIFEST, ArtifactMissing, LocalStore, make_store
from tests.helpers.s3 import s3_server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with s3_server(tmp_path_factory.mktemp("moto")) as settings:
        yield settings


def store_for(root: Path, s3: dict[str, str], prefix: str):  # type: ignore[no-untyped-def]
    return make_store(
        root,
        s3["TUNELAB_ARTIFACTS_URL"] + "/" + prefix,
        endpoint_url=s3["TUNELAB_ARTIFACTS_ENDPOINT"],
        region_name=s3["TUNELAB_ARTIFACTS_REGION"],
        aws_access_key_id=s3["TUNELAB_ARTIFACTS_KEY_ID"],
        aws_secret_access_key=s3["TUNELAB_ARTIFACTS_SECRET"],
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_tree_travels_whole_and_only_changes_travel_again(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = store_for(tmp_path / "a", s3, "trees")
    b = store_for(tmp_path / "b", s3, "trees")
    write(tmp_path / "a/runs/7/adapter/adapter_model.safetensors", b"weights" * 1000)
    write(tmp_path / "a/runs/7/adapter/adapter_config.json", b'{"r": 8}')

    with pytest.raises(ArtifactMissing):
        b.fetch_tree("runs/7/adapter")  # not published yet
    a.publish_tree("runs/7/adapter")
    assert b.exists("runs/7/adapter") and not b.exists("runs/70/adapter")
    folder = b.fetch_tree("runs/7/adapter")
    assert folder == tmp_path / "b/runs/7/adapter"
    assert (folder / "adapter_model.safetensors").read_bytes() == b"weights" * 1000
    assert json.loads((folder / MANIFEST).read_text())["adapter_config.json"]["size"] == 8

    # A second fetch with the same manifest downloads nothing: a local edit survives it.
    (folder / "adapter_config.json").write_bytes(b"local!!!")
    b.fetch_tree("runs/7/adapter")
    assert (folder / "adapter_config.json").read_bytes() == b"local!!!"

    # A re-published tree (a later checkpoint) replaces changed files and drops removed ones.
    write(tmp_path / "a/runs/7/adapter/adapter_config.json", b'{"r": 16}')
    (tmp_path / "a/runs/7/adapter/adapter_model.safetensors").unlink()
    a.publish_tree("runs/7/adapter")
    b.fetch_tree("runs/7/adapter")
    assert (folder / "adapter_config.json").read_bytes() == b'{"r": 16}'
    assert not (folder / "adapter_model.safetensors").exists()


def test_a_tree_without_its_manifest_is_not_there(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # What a reader sees while a publisher is half way: files uploaded, manifest not yet.
    a = store_for(tmp_path / "a", s3, "half")
    write(tmp_path / "a/exports/1/part", b"x")
    a.client.upload_file(
        str(tmp_path / "a/exports/1/part"), a.bucket, a._object("runs/1/adapter/f")
    )
    b = store_for(tmp_path / "b", s3, "half")
    assert not b.exists("runs/1/adapter")
    with pytest.raises(ArtifactMissing):
        b.fetch_tree("runs/1/adapter")


def test_files_range_reads_and_delete(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = store_for(tmp_path / "a", s3, "files")
    b = store_for(tmp_path / "b", s3, "files")
    data = bytes(range(256)) * 10_000  # 2.5 MB: more than one read chunk
    write(tmp_path / "a/exports/5/v1.gguf", data)
    a.publish_file("exports/5/v1.gguf")
    assert b.size("exports/5/v1.gguf") == len(data)
    assert b"".join(b.read_range("exports/5/v1.gguf")) == data
    assert b"".join(b.read_range("exports/5/v1.gguf", 100, 299)) == data[100:300]
    assert b.fetch_file("exports/5/v1.gguf").read_bytes() == data
    assert not list((tmp_path / "b/exports/5").glob(".tmp-*"))  # downloads land renamed

    a.delete("exports/5")
    assert not b.exists("exports/5/v1.gguf") and not (tmp_path / "a/exports/5").exists()
    with pytest.raises(ArtifactMissing):
        b.size("exports/5/v1.gguf")


def test_keys_cannot_leave_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ("../etc/passwd", "/abs/path", ""):
        with pytest.raises(ValueError):
            store.exists(key)


def test_the_local_store_moves_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path, "")
    assert isinstance(store, LocalStore) and not store.remote
    write(tmp_path / "datasets/3/normalized.jsonl", b"{}\n")
    store.publish_tree("datasets/3")
    assert store.fetch_tree("datasets/3") == tmp_path / "datasets/3"
    assert not (tmp_path / "datasets/3" / MANIFEST).exists()
    assert b"".join(store.read_range("datasets/3/normalized.jsonl", 1)) == b"}\n"
    with pytest.raises(ArtifactMissing):
        store.fetch_file("datasets/4/normalized.jsonl")
