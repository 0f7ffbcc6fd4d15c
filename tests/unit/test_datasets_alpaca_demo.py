"""LLaMA-Factory's alpaca demo files (shared data) load unchanged and normalize correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.datasets import Container, Schema, read_preview, validate_file

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _demo(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared demo data {path} is absent (it lives outside the repo)")
    return path


def _expected(record: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """LLaMA-Factory's rule, written out independently of the code under test."""
    prompt = record["instruction"]
    if record["input"]:
        prompt += "\n" + record["input"]
    return {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": record["output"]},
        ]
    }


@pytest.mark.parametrize(
    ("name", "rows", "with_input", "duplicates"),
    [("alpaca_zh_demo.json", 1000, 139, 8), ("alpaca_en_demo.json", 999, 412, 14)],
)
def test_demo_file_loads_cleanly(
    tmp_path: Path, name: str, rows: int, with_input: int, duplicates: int
) -> None:
    src = _demo(name)
    normalized, dropped = tmp_path / "n.jsonl", tmp_path / "d.jsonl"
    report = validate_file(src, normalized, dropped)

    assert report.container is Container.json
    assert report.format is Schema.alpaca
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (rows, rows, 0)
    # The demo files really do repeat some examples; those are warnings, not errors.
    assert report.counts == {"duplicate_row": duplicates}
    assert report.warnings == duplicates
    assert report.ok
    assert dropped.read_text(encoding="utf-8") == ""

    source = json.loads(src.read_text(encoding="utf-8"))
    lines = normalized.read_text(encoding="utf-8").splitlines()
    assert len(lines) == rows
    assert [json.loads(line) for line in lines] == [_expected(r) for r in source]
    assert sum(1 for r in source if r["input"]) == with_input  # both prompt shapes are covered


def test_demo_duplicates_point_at_first_copy(tmp_path: Path) -> None:
    report = validate_file(_demo("alpaca_zh_demo.json"), tmp_path / "n", tmp_path / "d")
    first = report.issues[0]
    assert (first.row, first.code, first.severity, first.params) == (
        517,
        "duplicate_row",
        "warning",
        {"first_row": 141},
    )
    assert "row 141" in first.message


def test_preview_pages_the_normalized_file(tmp_path: Path) -> None:
    normalized = tmp_path / "n.jsonl"
    validate_file(_demo("alpaca_en_demo.json"), normalized, tmp_path / "d.jsonl")
    page = read_preview(normalized, offset=998, limit=5)
    assert len(page) == 1  # only the last row is left
    assert page[0]["messages"][0]["role"] == "user"
    assert read_preview(normalized, offset=2000, limit=5) == []
    first_two = read_preview(normalized, 0, 2)
    assert [r["messages"][1]["content"][:6] for r in first_two] == ["Making", "The ca"]
