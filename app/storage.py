"""Paths under the data dir, and the one way files are put in place (temp + rename).

Layout: `tunelab.db` · `uploads/{token}/` (staged uploads awaiting a decision) ·
`datasets/{id}/` (`normalized.jsonl`, ...) · `models/{entry_id}/` (converted built-ins) ·
`models/hub/{org}--{name}/` (hub downloads) · `runs/{job_id}/` (`train.log`, `checkpoints/`,
`adapter/`: a model version's adapter stays in its run's folder) · `redis/` (embedded Redis).
Nothing else builds paths into the data dir: web, workers and the CLI ask a DataDir.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

STAGING_TTL_S = 24 * 3600
NORMALIZED_NAME = "normalized.jsonl"


# A built-in's id and each half of a hub id become one folder name: nothing that walks paths.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _safe_name(name: str) -> str:
    if not _SAFE_NAME.match(name) or ".." in name:
        raise ValueError(f"not a safe folder name: {name!r}")
    return name


class DataDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def key(self, path: Path) -> str:
        """The artifact store's key of a path under the data dir (app.artifacts)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    @property
    def database(self) -> Path:
        """The default SQLite database file."""
        return self.root / "tunelab.db"

    @property
    def redis(self) -> Path:
        """Working folder of the embedded Redis (its log file lives there too)."""
        return self.root / "redis"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    def staging(self, token: str) -> Path:
        if not token.isalnum():  # tokens are uuid hex; refuse anything that could walk paths
            raise ValueError("bad upload token")
        return self.uploads / token

    def new_staging(self) -> tuple[str, Path]:
        token = uuid.uuid4().hex
        path = self.staging(token)
        path.mkdir(parents=True)
        return token, path

    def dataset(self, dataset_id: int) -> Path:
        return self.root / "datasets" / str(dataset_id)

    def normalized(self, dataset_id: int) -> Path:
        """A dataset's rows in the one format training reads."""
        return self.dataset(dataset_id) / NORMALIZED_NAME

    def run(self, job_id: int) -> Path:
        """A training job's folder: its log, checkpoints and finished adapter."""
        return self.root / "runs" / str(job_id)

    def run_log(self, job_id: int) -> Path:
        return self.run(job_id) / "train.log"

    def export_dir(self, version_id: int) -> Path:
        """A model version's exports, one file per format (cached)."""
        return self.root / "exports" / str(version_id)

    def models(self) -> Path:
        return self.root / "models"

    def model(self, entry_id: str) -> Path:
        """A built-in model's converted safetensors folder."""
        return self.models() / _safe_name(entry_id)

    def hub_model(self, repo_id: str) -> Path:
        """Where a hub model `org/name` is downloaded (`org--name`, so ids map one to one)."""
        org, sep, name = repo_id.partition("/")
        if not sep or "--" in org or "--" in name:
            raise ValueError(f"not a hub id of the form org/name: {repo_id!r}")
        return self.models() / "hub" / f"{_safe_name(org)}--{_safe_name(name)}"


def move_into_place(src_dir: Path, dest_dir: Path) -> None:
    """Rename a fully written folder to its final name (atomic on one filesystem)."""
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src_dir, dest_dir)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def clean_stale_staging(data_dir: DataDir, ttl_s: float = STAGING_TTL_S) -> int:
    """Drop staged uploads nobody decided on within the TTL; returns how many were removed."""
    if not data_dir.uploads.exists():
        return 0
    removed = 0
    cutoff = time.time() - ttl_s
    for entry in data_dir.uploads.iterdir():
        if entry.is_dir() and entry.stat().st_mtime < cutoff:
            remove_tree(entry)
            removed += 1
    return removed
