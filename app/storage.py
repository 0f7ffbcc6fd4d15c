"""Paths under the data dir, and the one way files are put in place (temp + rename).

Layout: `tunelab.db` · `uploads/{token}/` (staged uploads awaiting a decision) ·
`datasets/{id}/` · `models/{name}/` · `runs/{job_id}/` · `versions/{id}/` · `exports/` ·
`redis/`. Nothing else builds paths into the data dir.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

STAGING_TTL_S = 24 * 3600


class DataDir:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

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

    def run(self, job_id: int) -> Path:
        return self.root / "runs" / str(job_id)

    def models(self) -> Path:
        return self.root / "models"


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
