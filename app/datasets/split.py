"""Deterministic train/validation split of a normalized JSONL file.

Only the byte offsets of the lines are held in memory (8 bytes per row), never the rows: the
offsets are shuffled with the seed and each line is copied by seeking to it.
"""

from __future__ import annotations

import random
from array import array
from pathlib import Path


def _line_offsets(path: Path) -> array[int]:
    offsets: array[int] = array("q")
    position = 0
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                offsets.append(position)
            position += len(line)
    return offsets


def split_rows(
    normalized_path: Path, train_out: Path, val_out: Path, val_fraction: float, seed: int
) -> tuple[int, int]:
    """Shuffle the rows with `seed`, write the first `val_fraction` of them to `val_out` and the
    rest to `train_out` (both in shuffled order). Returns (train_rows, val_rows).

    With a fraction above 0 and at least 2 rows, both sides get at least one row, so a tiny
    dataset still has something to evaluate on. The same file and seed always give the same
    split (Python's `random.Random` is stable across runs and platforms).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError("val_fraction must be in [0, 1)")
    offsets = _line_offsets(normalized_path)
    total = len(offsets)
    val_rows = round(total * val_fraction)
    if val_fraction > 0 and total >= 2:
        val_rows = min(max(val_rows, 1), total - 1)
    elif total < 2:
        val_rows = 0
    random.Random(seed).shuffle(offsets)  # an array is a MutableSequence: shuffled in place
    with (
        normalized_path.open("rb") as src,
        train_out.open("wb") as train,
        val_out.open("wb") as val,
    ):
        for index, offset in enumerate(offsets):
            src.seek(offset)
            line = src.readline()
            if not line.endswith(b"\n"):  # the last line may lack its newline
                line += b"\n"
            (val if index < val_rows else train).write(line)
    return total - val_rows, val_rows
