"""What a task needs from the artifact store, made local; what it made, published.

Rows name artifacts by store key (`runs/7/adapter`, `datasets/3`), relative to a data dir, so a
worker on another machine finds them in its own data dir once fetched (app.artifacts). Rows
written before the store existed hold absolute paths; those still work where they exist.
"""

from __future__ import annotations

from pathlib import Path

from app.artifacts import ArtifactMissing, get_store
from app.config import get_settings
from app.storage import NORMALIZED_NAME


def _key(path_or_key: str | Path) -> str | None:
    """The store key of a row's path: relative keys as they are; an absolute path under this
    data dir as its key; None for an absolute path elsewhere (an old row of another layout)."""
    path = Path(path_or_key)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return get_settings().paths.key(path)
    except ValueError:
        return None


def local_tree(path_or_key: str | Path) -> Path:
    """The folder here, fetched from the store when it was made elsewhere. When the store has
    no such folder the local path is returned anyway: callers check it and fail with their
    own message ("the version's files were deleted")."""
    key = _key(path_or_key)
    if key is None:
        return Path(path_or_key)
    try:
        return get_store().fetch_tree(key)
    except ArtifactMissing:
        return get_settings().paths.root / key


def local_dataset(dataset_id: int) -> Path:
    """A dataset's normalized rows here (missing when the dataset was deleted)."""
    paths = get_settings().paths
    return local_tree(paths.key(paths.dataset(dataset_id))) / NORMALIZED_NAME


def store_key(path: Path) -> str:
    """What a row records for a folder or file made under this data dir."""
    return get_settings().paths.key(path)


def publish_tree(path: Path) -> str:
    """Publish a folder made here; returns its key."""
    key = store_key(path)
    get_store().publish_tree(key)
    return key


def publish_file(path: Path) -> str:
    key = store_key(path)
    get_store().publish_file(key)
    return key
