"""workers/disk.py: folders appear only when complete, partial files go on any error, and a full
disk is told apart from other failures even when the writer does not say so (torch.save).

The full-disk tests write to a real size-limited tmpfs (root only, as in CI; they skip
elsewhere): the libraries meet a real ENOSPC and fail in their own words."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from tests.helpers.faults import can_mount, small_filesystem
from workers.disk import DiskFull, disk_full_error, human_bytes, staged_dir

needs_mount = pytest.mark.skipif(not can_mount(), reason="mounting a small tmpfs needs root")


def test_a_folder_appears_only_once_complete_and_replaces_the_old_one(tmp_path: Path) -> None:
    final = tmp_path / "adapter"
    final.mkdir()
    (final / "weights").write_text("old")
    with pytest.raises(ValueError), staged_dir(final) as staged:
        (staged / "weights").write_text("half")
        raise ValueError("the writer failed")
    assert (final / "weights").read_text() == "old"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # nothing staged left

    with staged_dir(final) as staged:
        (staged / "weights").write_text("new")
    assert (final / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no old copy left


def test_an_error_that_is_not_a_full_disk_stays_itself(tmp_path: Path) -> None:
    with pytest.raises(KeyError), staged_dir(tmp_path / "x"):
        raise KeyError("bug")
    assert disk_full_error(RuntimeError("boom"), tmp_path) is None


def test_full_disk_is_read_from_the_error_chain(tmp_path: Path) -> None:
    os_error = OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(disk_full_error(os_error, tmp_path), DiskFull)
    wrapped = RuntimeError("export failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert isinstance(disk_full_error(wrapped, tmp_path), DiskFull)
    # safetensors' words (its Rust writer has no errno for Python to see).
    safetensors = Exception(
        "Error while serializing: I/O error: No space left on device (os error 28)"
    )
    full = disk_full_error(safetensors, tmp_path)
    assert full is not None and full.code == "disk_full" and set(full.params) == {"free"}
    assert str(tmp_path) not in str(full) and "/" not in full.params["free"]


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * 1024**2 + 1, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 TiB",
    ]


@needs_mount
@pytest.mark.parametrize("writer", ["torch.save", "safetensors", "python"])
def test_a_full_disk_raises_disk_full_and_gives_the_space_back(tmp_path: Path, writer: str) -> None:
    import torch
    from safetensors.torch import save_file

    tensor = torch.zeros(256 * 1024)  # 1 MiB
    write = {
        "torch.save": lambda folder: torch.save({"t": tensor}, folder / "optimizer.pt"),
        "safetensors": lambda folder: save_file({"t": tensor}, str(folder / "w.safetensors")),
        "python": lambda folder: (folder / "log").write_bytes(b"\0" * (1 << 20)),
    }[writer]
    with small_filesystem(tmp_path / "disk", "256k") as disk:
        total = shutil.disk_usage(disk).total
        (disk / "earlier").mkdir()
        with pytest.raises(DiskFull) as raised, staged_dir(disk / "checkpoint") as staged:
            (staged / "state.json").write_text("{}")
            write(staged)
        assert [p.name for p in disk.iterdir()] == ["earlier"]  # no partial checkpoint
        assert shutil.disk_usage(disk).free == total  # every byte of it given back
        assert raised.value.params == {"free": human_bytes(total)}
        assert raised.value.__cause__ is not None  # the writer's own error, for the log
