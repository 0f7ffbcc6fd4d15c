"""DataDir is the one map of the data dir: absolute paths, and no name that walks out of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.storage import DataDir


def test_layout_is_absolute_and_under_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = DataDir("data")  # a relative setting still gives absolute paths
    root = tmp_path / "data"
    assert data.root == root
    assert data.database == root / "tunelab.db"
    assert data.redis == root / "redis"
    assert data.normalized(3) == root / "datasets" / "3" / "normalized.jsonl"
    assert data.run_log(7) == root / "runs" / "7" / "train.log"
    assert data.model("smollm2-135m-instruct") == root / "models" / "smollm2-135m-instruct"
    assert data.hub_model("HuggingFaceTB/SmolLM2-135M") == (
        root / "models" / "hub" / "HuggingFaceTB--SmolLM2-135M"
    )


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "", ".hidden", "a\\b"])
def test_model_names_cannot_walk_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        DataDir(tmp_path).model(name)


@pytest.mark.parametrize("repo", ["noslash", "a/b/c", "../b", "a/..", "a--b/c", "a/", "/b"])
def test_hub_ids_cannot_walk_paths_or_collide(tmp_path: Path, repo: str) -> None:
    with pytest.raises(ValueError):
        DataDir(tmp_path).hub_model(repo)
