"""Receiving an uploaded file: stream it into a staging folder, hashing and counting as it goes.

The limit is enforced while copying, so an over-limit upload stops at the limit and its
staging folder is removed: nothing half-written stays behind.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.errors import AppError
from app.storage import DataDir, remove_tree

CHUNK = 1 << 20


class UploadTooLarge(AppError):
    status_code = 413
    code = "upload_too_large"


@dataclass
class ReceivedFile:
    token: str
    folder: Path
    path: Path
    filename: str
    sha256: str
    size: int


def safe_filename(name: str | None) -> str:
    """The name the client gave, for display only: the file itself is stored as `original.ext`
    in a new staging folder (`receive`), so no part of this name is ever a path. Its last part
    after either separator (a Windows path too), without control characters (NUL included)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:200] or "upload"


def original_name(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return f"original{suffix if suffix in {'.json', '.jsonl', '.csv', '.tsv', '.txt'} else ''}"


def receive(
    stream: BinaryIO, filename: str | None, data_dir: DataDir, max_bytes: int
) -> ReceivedFile:
    """Copy `stream` into a new staging folder; raises UploadTooLarge past `max_bytes`."""
    name = safe_filename(filename)
    token, folder = data_dir.new_staging()
    path = folder / original_name(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(
                        "errors.upload_too_large", limit_mb=max_bytes // (1024 * 1024)
                    )
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        remove_tree(folder)
        raise
    return ReceivedFile(token, folder, path, name, digest.hexdigest(), size)
