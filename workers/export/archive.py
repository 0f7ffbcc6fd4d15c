"""Files that appear under their final name only when complete: zips, folders, checksums.

Both writers build under a hidden temporary name in the destination's own directory (same
filesystem, so the final os.replace/os.rename is atomic) and remove it on any failure, so a
reader, a retry or the download route never sees a half-written export under the real name.
"""

import hashlib
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.export.errors import ExportFailed

# Zip entries carry this timestamp and mode instead of the files' own, so the same folder always
# gives the same bytes (and the same sha256) whenever and wherever it is zipped.
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644 << 16
# Weights are dense floats that deflate barely shrinks, at a high CPU cost on gigabyte files.
_STORED_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
_CHUNK = 1 << 20


def _temp_sibling(final: Path, suffix: str) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}{suffix}")


def _files_in_order(folder: Path) -> list[Path]:
    """Every regular file under `folder`, sorted by its relative POSIX path (deterministic)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _add_file(archive: zipfile.ZipFile, path: Path, arcname: str) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
    info.external_attr = _FILE_MODE
    stored = path.name.endswith(_STORED_SUFFIXES)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    # zipfile decides on ZIP64 from the declared size; merged weights pass 4 GiB easily.
    info.file_size = path.stat().st_size
    with path.open("rb") as src, archive.open(info, "w") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)


def zip_folder(folder: str | Path, out_zip: str | Path) -> Path:
    """Zip every file under `folder` (paths relative to it) into `out_zip`, atomically.

    The zip is written to a hidden temporary file next to `out_zip`, synced, then renamed onto
    `out_zip` (replacing an older one). On any error the temporary file is removed and
    `out_zip` is left as it was. Entry order, timestamps and modes are fixed, so the output is
    byte-identical for identical input. Returns `out_zip`.
    """
    source, final = Path(folder), Path(out_zip)
    if not source.is_dir():
        raise NotADirectoryError(f"{source} is not a folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(final, ".zip.tmp")
    try:
        with temp.open("wb") as raw:
            with zipfile.ZipFile(raw, "w", compresslevel=6) as archive:
                for path in _files_in_order(source):
                    _add_file(archive, path, path.relative_to(source).as_posix())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temp, final)
    except BaseException:
        # BaseException too: a cancelled task (KeyboardInterrupt, SystemExit) must not leave
        # a gigabyte temp file behind either.
        temp.unlink(missing_ok=True)
        raise
    return final


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (exports can be many gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_dir(final_dir: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty sibling temp folder; on success it is renamed to `final_dir`.

    On an exception inside the block the temp folder is removed and `final_dir` is untouched.
    An existing `final_dir` raises ExportFailed (export_failed) before any work, unless
    `replace`: then the old folder is moved aside, the new one renamed in, and the old removed
    (there is never a moment where `final_dir` holds a mix of both).
    """
    final = Path(final_dir)
    if final.exists() and not replace:
        raise ExportFailed(f"{final} already exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(final, ".tmp")
    temp.mkdir()
    try:
        yield temp
        old = _temp_sibling(final, ".old") if final.exists() else None
        if old is not None:
            final.rename(old)
        try:
            temp.rename(final)
        except BaseException:
            if old is not None:
                old.rename(final)  # put the previous export back rather than lose both
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
