"""CSV uploads: header reading, column-map suggestions and validation through a mapping."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pytest import MonkeyPatch

from app.datasets import Container, Schema, csv_columns, suggest_column_map, validate_file

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "datasets_mapped.csv"
MAPPING = {"instruction": "prompt", "input": "context", "output": "response"}


def test_csv_columns_reads_the_header() -> None:
    assert csv_columns(FIXTURE) == ["prompt", "context", "response", "notes"]


def test_suggest_column_map_uses_names_and_aliases() -> None:
    assert suggest_column_map(["prompt", "context", "response", "notes"]) == MAPPING
    assert suggest_column_map(["Question", "Answer"]) == {
        "instruction": "Question",
        "output": "Answer",
    }
    assert suggest_column_map(["query", "completion", "System"]) == {
        "instruction": "query",
        "output": "completion",
        "system": "System",
    }
    # Same names win over aliases; a column is never used twice.
    assert suggest_column_map(["prompt", "instruction", "input", "output", "answer"]) == {
        "instruction": "instruction",
        "input": "input",
        "output": "output",
    }
    assert suggest_column_map(["a", "b"]) == {}


def test_csv_with_mapping_validates_and_normalizes(tmp_path: Path) -> None:
    normalized, dropped = tmp_path / "n.jsonl", tmp_path / "d.jsonl"
    report = validate_file(FIXTURE, normalized, dropped, column_map=MAPPING)

    assert (report.container, report.format) == (Container.csv, Schema.alpaca)
    # Records: 1-3 good, 4 blank (warning), 5 has an empty response.
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (4, 3, 1)
    assert [(i.row, i.code, i.field) for i in report.issues] == [
        (4, "blank_row", None),
        (5, "empty_field", "response"),  # the user's column name, not ours
    ]
    rows = [json.loads(line) for line in normalized.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["messages"] == [
        {"role": "user", "content": "Translate to English\n早上好"},
        {"role": "assistant", "content": "Good morning."},
    ]
    assert rows[1]["messages"][1]["content"].count("\n") == 2  # quoted multi-line cell
    assert rows[2]["messages"][1]["content"] == "red, blue"
    record = json.loads(dropped.read_text(encoding="utf-8"))
    assert record["row"] == 5
    assert record["raw"] == {
        "prompt": "Summarize",
        "context": "",
        "response": "",
        "notes": "empty answer",
    }


def test_csv_without_mapping_uses_suggestions(tmp_path: Path) -> None:
    report = validate_file(FIXTURE, tmp_path / "n", tmp_path / "d")
    assert (report.valid_rows, report.invalid_rows) == (3, 1)


def test_csv_mapping_to_missing_column_is_a_file_level_error(tmp_path: Path) -> None:
    mapping = {"instruction": "prompt", "output": "reply"}
    report = validate_file(FIXTURE, tmp_path / "n", tmp_path / "d", column_map=mapping)
    assert [(i.row, i.code, i.field) for i in report.issues] == [(None, "missing_column", "output")]
    assert report.issues[0].params == {"columns": "prompt, context, response, notes"}
    assert report.total_rows == 0 and not report.ok


def test_tsv_extra_values_and_json_history(tmp_path: Path) -> None:
    src = tmp_path / "upload.tmp"
    src.write_text(
        "instruction\toutput\thistory\n"
        'Hi\tHello\t[["Earlier", "Sure"]]\n'
        "Hi\tHello\t\tstray value\n"
        "Hi\tHello\t[broken\n",
        encoding="utf-8",
    )
    report = validate_file(src, tmp_path / "n", tmp_path / "d", filename="upload.tsv")
    assert report.container is Container.csv
    assert [(i.row, i.code, i.field) for i in report.issues] == [
        (2, "column_count", None),
        (3, "invalid_json", "history"),
    ]
    assert report.issues[0].params == {"found": 4, "expected": 3}
    first = json.loads((tmp_path / "n").read_text(encoding="utf-8"))
    assert [m["content"] for m in first["messages"]] == ["Earlier", "Sure", "Hi", "Hello"]


def test_unreadable_csv_is_a_file_level_error(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    src = tmp_path / "big.csv"
    src.write_text("instruction,output\nHi,Hello\nHi," + "x" * 50 + "\n", encoding="utf-8")
    old_limit = csv.field_size_limit()
    monkeypatch.setattr("app.datasets.csvfile._FIELD_LIMIT", 20)
    csv.field_size_limit(20)  # the cap is process-wide; lower it just for this test
    try:
        report = validate_file(src, tmp_path / "n", tmp_path / "d")
    finally:
        csv.field_size_limit(old_limit)
    assert [(i.row, i.code) for i in report.issues] == [(None, "invalid_csv")]
    assert report.issues[0].params["last_row"] == 1
    assert report.valid_rows == 1 and not report.ok
