"""Deterministic train/validation split and container detection helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.datasets import Container, split_rows
from app.datasets.probe import detect_container


def _normalized(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "normalized.jsonl"
    rows = (
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(count)
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_split_is_deterministic_and_complete(tmp_path: Path) -> None:
    src = _normalized(tmp_path, 100)
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    assert split_rows(src, train, val, 0.1, seed=42) == (90, 10)
    first = (_lines(train), _lines(val))
    assert sorted(first[0] + first[1]) == sorted(_lines(src))
    assert first[0] != _lines(src)[:90]  # shuffled, not just cut

    assert split_rows(src, train, val, 0.1, seed=42) == (90, 10)
    assert (_lines(train), _lines(val)) == first
    split_rows(src, train, val, 0.1, seed=7)
    assert _lines(val) != first[1]


@pytest.mark.parametrize(
    ("rows", "fraction", "expected"),
    [(2, 0.01, (1, 1)), (1, 0.5, (1, 0)), (10, 0.0, (10, 0)), (0, 0.2, (0, 0)), (3, 0.9, (1, 2))],
)
def test_split_edge_sizes(
    tmp_path: Path, rows: int, fraction: float, expected: tuple[int, int]
) -> None:
    src = _normalized(tmp_path, rows)
    assert split_rows(src, tmp_path / "t", tmp_path / "v", fraction, seed=1) == expected


def test_split_rejects_bad_fraction(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        split_rows(_normalized(tmp_path, 3), tmp_path / "t", tmp_path / "v", 1.0, seed=1)


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        ('  \n[{"a": 1}]', None, Container.json),
        ('{"a": 1}\n', "data.csv", Container.jsonl),  # content wins over the name
        ("a;b\n1;2\n", "x.csv", Container.csv),
        ("instruction,output\nHi,Hello\n", None, Container.csv),
        ("one column only\n", "x.txt", None),
        ("one column only\n", "x.TSV", Container.csv),
    ],
)
def test_detect_container(head: str, filename: str | None, expected: Container | None) -> None:
    assert detect_container(head, filename) is expected
