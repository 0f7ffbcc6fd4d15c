"""The artifact store: where datasets, adapters, checkpoints and exports live between machines.

Keys are paths relative to the data dir (`datasets/3`, `runs/7/adapter`, `exports/5/x.gguf`),
so every process keeps using its own data dir (app.storage.DataDir) as a local working copy
and the store decides whether anything has to travel:

- `LocalStore` (the default): the data dir *is* the store — today's layout, also right when
  the data dir is a shared filesystem (NFS). Publishing and fetching do nothing.
- `S3Store` (`TUNELAB_ARTIFACTS_URL=s3://bucket/prefix`, endpoint and credentials from the
  settings): a worker on another machine needs only the database, Redis and the bucket.

Folders travel as trees: their files first, then a manifest (`<key>/.tunelab-manifest.json`:
each file's size and SHA-256). A tree without its manifest is not complete and is never
fetched, so a reader sees a whole adapter or none (S3 objects themselves appear whole). A
fetched tree keeps the manifest beside its files: fetching again downloads only the files whose
checksum changed, and nothing when the manifest is the same (the local cache is keyed by
checksum). Downloads land under a temporary name and are renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

MANIFEST = ".tunelab-manifest.json"
CHUNK = 1024 * 1024


class ArtifactMissing(FileNotFoundError):
    """The store has no (complete) artifact under this key."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {size, sha256}} of every file under `folder` (the manifest excluded)."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not _bookkeeping(path.name):
            rel = path.relative_to(folder).as_posix()
            files[rel] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return files


def _bookkeeping(name: str) -> bool:
    """The store's own files: manifests, checksum sidecars, downloads in progress."""
    return (
        name == MANIFEST
        or name.startswith(".tmp-")
        or (name[0] == "." and name.endswith(".sha256"))
    )


def _check_key(key: str) -> str:
    parts = Path(key).parts
    if not key or Path(key).is_absolute() or ".." in parts:
        raise ValueError(f"not a store key: {key!r}")
    return Path(key).as_posix()


class ArtifactStore(Protocol):
    """What web and workers ask of the store; `root` is this process's data dir."""

    remote: bool  # False: the data dir is the store, nothing travels

    def publish_tree(self, key: str) -> None:
        """Make the local folder `root/key` the store's `key` (files, then the manifest)."""

    def publish_file(self, key: str) -> None:
        """Make the local file `root/key` the store's `key`."""

    def fetch_tree(self, key: str) -> Path:
        """The folder `root/key`, downloaded or brought up to date first. ArtifactMissing."""

    def fetch_file(self, key: str) -> Path:
        """The file `root/key`, downloaded first when missing or changed. ArtifactMissing."""

    def exists(self, key: str) -> bool:
        """A complete file or tree is stored under `key`."""

    def size(self, key: str) -> int:
        """Bytes of the stored file. ArtifactMissing."""

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The stored file's bytes start..end (inclusive), in chunks, for streamed downloads."""

    def delete(self, key: str) -> None:
        """Forget a file or a tree (locally too)."""


@dataclass
class LocalStore:
    """The data dir is the store (one machine, or a shared filesystem)."""

    root: Path
    remote: bool = False

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def publish_tree(self, key: str) -> None:
        self._path(key)

    def publish_file(self, key: str) -> None:
        self._path(key)

    def fetch_tree(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_dir():
            raise ArtifactMissing(key)
        return path

    def fetch_file(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ArtifactMissing(key)
        return path

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ArtifactMissing(key) from exc

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise ArtifactMissing(key)
        return _file_range(path, start, end)

    def delete(self, key: str) -> None:
        _remove_local(self._path(key))


def _file_range(path: Path, start: int, end: int | None) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        left = None if end is None else end - start + 1
        while left is None or left > 0:
            block = handle.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                return
            if left is not None:
                left -= len(block)
            yield block


def _remove_local(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)


def _sidecar(path: Path) -> Path:
    """Where a fetched or published file's SHA-256 is remembered (hidden, beside it)."""
    return path.with_name(f".{path.name}.sha256")


class S3Store:
    """An S3-compatible bucket (AWS, MinIO, Ceph, moto…) under `prefix`, with `root` as the
    local cache."""

    remote = True

    def __init__(self, root: Path, url: str, client: Any) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"TUNELAB_ARTIFACTS_URL must look like s3://bucket/prefix: {url!r}")
        self.root = root
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client

    def _object(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _manifest(self, key: str) -> dict[str, dict[str, Any]] | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._object(f"{key}/{MANIFEST}"))
        except self.client.exceptions.NoSuchKey:
            return None
        return json.loads(body["Body"].read())

    # -- publishing ---------------------------------------------------------------------------

    def publish_tree(self, key: str) -> None:
        folder = self.root / _check_key(key)
        files = tree_manifest(folder)
        old = self._manifest(key) or {}
        for rel, meta in files.items():
            if old.get(rel) != meta:  # unchanged files (a re-published checkpoint dir) stay
                self.client.upload_file(
                    str(folder / rel), self.bucket, self._object(f"{key}/{rel}")
                )
        # The manifest last: before it is written, readers see the previous tree (or none).
        body = json.dumps(files, sort_keys=True).encode()
        self.client.put_object(Bucket=self.bucket, Key=self._object(f"{key}/{MANIFEST}"), Body=body)
        (folder / MANIFEST).write_bytes(body)
        for rel in set(old) - set(files):
            self.client.delete_object(Bucket=self.bucket, Key=self._object(f"{key}/{rel}"))

    def publish_file(self, key: str) -> None:
        path = self.root / _check_key(key)
        digest = sha256_of(path)
        extra = {"Metadata": {"sha256": digest}}
        self.client.upload_file(str(path), self.bucket, self._object(key), ExtraArgs=extra)
        _sidecar(path).write_text(digest)

    # -- fetching -----------------------------------------------------------------------------

    def fetch_tree(self, key: str) -> Path:
        folder = self.root / _check_key(key)
        remote = self._manifest(key)
        if remote is None:
            if folder.is_dir() and not (folder / MANIFEST).exists():
                return folder  # made here and not published yet (a run in progress)
            raise ArtifactMissing(key)
        local_manifest = folder / MANIFEST
        if local_manifest.is_file() and json.loads(local_manifest.read_bytes()) == remote:
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        for rel, meta in remote.items():
            target = folder / rel
            if target.is_file() and target.stat().st_size == meta["size"]:
                if sha256_of(target) == meta["sha256"]:
                    continue
            self._download(f"{key}/{rel}", target, meta["sha256"])
        for path in folder.rglob("*"):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and not _bookkeeping(path.name) and rel not in remote:
                path.unlink()  # files the store's tree no longer has
        local_manifest.write_text(json.dumps(remote, sort_keys=True))
        return folder

    def fetch_file(self, key: str) -> Path:
        path = self.root / _check_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except self.client.exceptions.ClientError as exc:
            if path.is_file():
                return path  # made here, not published yet
            raise ArtifactMissing(key) from exc
        expected = head.get("Metadata", {}).get("sha256")
        if path.is_file() and path.stat().st_size == head["ContentLength"]:
            # The checksum recorded when this copy was made saves hashing gigabytes each time.
            sidecar = _sidecar(path)
            known = sidecar.read_text() if sidecar.is_file() else None
            if expected is None or (known or sha256_of(path)) == expected:
                return path
        self._download(key, path, expected)
        if expected is not None:
            _sidecar(path).write_text(expected)
        return path

    def _download(self, key: str, target: Path, sha256: str | None) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        os.close(fd)
        try:
            self.client.download_file(self.bucket, self._object(key), tmp)
            if sha256 is not None and sha256_of(Path(tmp)) != sha256:
                raise OSError(f"the stored {key} does not match its checksum")
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)

    # -- reading and deleting -----------------------------------------------------------------

    def exists(self, key: str) -> bool:
        if self._manifest(key) is not None:
            return True
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
            return True
        except self.client.exceptions.ClientError:
            return False

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except self.client.exceptions.ClientError as exc:
            raise ArtifactMissing(key) from exc
        return int(head["ContentLength"])

    def read_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        span = f"bytes={start}-{'' if end is None else end}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._object(key), Range=span)
        except self.client.exceptions.ClientError as exc:
            raise ArtifactMissing(key) from exc
        return iter(lambda: body["Body"].read(CHUNK), b"")

    def delete(self, key: str) -> None:
        prefix = self._object(key)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"]
                if name == prefix or name.startswith(prefix + "/"):  # not `runs/70` for `runs/7`
                    self.client.delete_object(Bucket=self.bucket, Key=name)
        _remove_local(self.root / _check_key(key))


def make_store(root: Path, url: str | None, **client_options: Any) -> ArtifactStore:
    """LocalStore without a URL; S3Store for `s3://…` (boto3 imported only then)."""
    if not url:
        return LocalStore(Path(root))
    import boto3

    options = {k: v for k, v in client_options.items() if v}
    return S3Store(Path(root), url, boto3.client("s3", **options))


@lru_cache(maxsize=1)
def get_store() -> ArtifactStore:
    """The store of this process's settings (reset_app_caches clears it in tests)."""
    from app.config import get_settings

    settings = get_settings()
    return make_store(
        settings.paths.root,
        settings.artifacts_url,
        endpoint_url=settings.artifacts_endpoint,
        aws_access_key_id=settings.artifacts_key_id,
        aws_secret_access_key=settings.artifacts_secret,
        region_name=settings.artifacts_region,
    )
