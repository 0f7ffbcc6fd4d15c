"""Saving results so that a full disk fails cleanly: folders written aside and renamed into
place, partial files removed on any error, and a full disk reported as such (`disk_full`).

A full disk does not always say so. Python's own writes raise OSError(ENOSPC) and safetensors
words it ("No space left on device (os error 28)"), but torch.save's C++ writer only says
"unexpected pos 576 vs 534" (measured on a full tmpfs). So a failed write also counts as a full
disk when the disk it wrote to has (almost) nothing left at that moment, measured before the
partial files are removed. Pure stdlib: training and export code import it.
"""

from __future__ import annotations

import errno
import shutil
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.error_codes import CodedError, TaskError

_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_MARKERS = ("No space left on device", "Disk quota exceeded", "os error 28", "StorageFull")
# Below this a write that failed is taken to have failed for want of space.
NEARLY_FULL_BYTES = 1 << 20


def human_bytes(count: int) -> str:
    """`count` in binary units as the pages show sizes ("12.0 KiB"): the same in every
    language, so it can be a catalog parameter."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


class DiskFull(CodedError):
    """Saving failed for want of disk space; `free` is what is left once the partial files were
    removed. No path in the message or parameters: users read both."""

    def __init__(self, free: int | None) -> None:
        shown = human_bytes(free) if free is not None else "?"
        super().__init__(
            f"the disk is full: saving failed and the partial files were removed ({shown} free "
            "now); free space on the worker's data disk, then try again",
            TaskError.DISK_FULL,
            free=shown,
        )


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def looks_like_disk_full(error: BaseException, folder: Path) -> bool:
    """Whether `error`, raised while writing into `folder`, came from a full disk (see the
    module docstring); call it before removing what the write left behind."""
    for link in _chain(error):
        if isinstance(link, DiskFull):
            return True
        if isinstance(link, OSError) and link.errno in _ERRNOS:
            return True
        if any(marker in str(link) for marker in _MARKERS):
            return True
    free = free_bytes(folder)
    return free is not None and free < NEARLY_FULL_BYTES


def _replace_dir(staged: Path, final: Path) -> None:
    """Rename `staged` onto `final`; an older `final` is moved aside first and removed after,
    so `final` is always either the old folder or the new one, never a mix."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    try:
        staged.rename(final)
    except BaseException:
        if old.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield an empty hidden sibling of `final` to write into; on success it becomes `final`
    (replacing an older one). On any error it is removed, and an error from a full disk is
    raised as DiskFull (the original as its cause)."""
    final = Path(final)
    staged = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(staged, ignore_errors=True)  # left by a process killed mid-write
    try:
        staged.mkdir(parents=True)
        yield staged
        _replace_dir(staged, final)
    except Exception as error:
        full = looks_like_disk_full(error, final.parent)
        # The writer's frames still hold its open file (torch.save's does, through the error it
        # raised first): removing the file would not free its space while the errors live.
        # Their locals go; the stacks stay for the log.
        for link in _chain(error):
            traceback.clear_frames(link.__traceback__)
        shutil.rmtree(staged, ignore_errors=True)
        if full and not isinstance(error, DiskFull):
            raise DiskFull(free_bytes(final.parent)) from error
        raise
    except BaseException:  # a cancelled task leaves nothing half-written either
        shutil.rmtree(staged, ignore_errors=True)
        raise


def disk_full_error(error: BaseException, folder: Path) -> DiskFull | None:
    """DiskFull for an error raised while writing into `folder` (whose partial files the
    writer already removed, so only the error itself can tell), else None."""
    if isinstance(error, DiskFull):
        return error
    for link in _chain(error):
        if (isinstance(link, OSError) and link.errno in _ERRNOS) or any(
            marker in str(link) for marker in _MARKERS
        ):
            return DiskFull(free_bytes(folder))
    return None
