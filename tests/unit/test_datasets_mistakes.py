"""A fixture with many kinds of mistakes: every one is reported on the right row and field."""

from __future__ import annotations

import json
from pathlib import Path

from app.datasets import MESSAGES_EN, SEVERITY, Schema, validate_file

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "datasets_mistakes.jsonl"

# (row = line number, code, field) in file order; line 4 is blank, the file's last line too.
EXPECTED = [
    (2, "invalid_json", None),
    (3, "not_an_object", None),
    (4, "blank_row", None),
    (5, "missing_field", "messages[0].content"),
    (6, "empty_field", "messages[1].content"),
    (7, "wrong_type", "messages[1].content"),
    (8, "unknown_role", "messages[1].role"),
    (9, "turn_order", "messages[1]"),
    (10, "turn_order", "messages[0]"),
    (11, "last_turn_not_assistant", "messages[2]"),
    (12, "mixed_format", None),
    (13, "unknown_format", None),
    (14, "duplicate_row", None),
    (15, "wrong_type", "messages"),
    (16, "turn_order", "messages[1]"),  # a tool result without an assistant tool call
    (18, "turn_order", "messages[2]"),  # a system turn that is not first
    (19, "missing_field", "messages[0].role"),
]


def test_each_mistake_is_reported_on_its_row_and_field(tmp_path: Path) -> None:
    dropped = tmp_path / "dropped.jsonl"
    report = validate_file(FIXTURE, tmp_path / "normalized.jsonl", dropped)

    assert report.format is Schema.openai
    assert [(i.row, i.code, i.field) for i in report.issues] == EXPECTED
    assert len({code for _, code, _ in EXPECTED}) >= 12
    # Lines 1, 14 (a duplicate is only a warning) and 17 (a proper tool call) are kept.
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (18, 3, 15)
    assert report.warnings == 2  # blank_row + duplicate_row
    assert report.counts["turn_order"] == 4 and report.counts["missing_field"] == 2
    assert report.ok


def test_issue_details_say_what_and_how(tmp_path: Path) -> None:
    report = validate_file(FIXTURE, tmp_path / "n.jsonl", tmp_path / "d.jsonl")
    by_row = {(i.row, i.code): i for i in report.issues}

    assert by_row[(7, "wrong_type")].params == {"expected": "string", "found": "number"}
    assert by_row[(8, "unknown_role")].params["role"] == "bot"
    assert by_row[(9, "turn_order")].params == {"role": "user", "previous": "user"}
    assert by_row[(10, "turn_order")].params == {"role": "assistant", "previous": "start"}
    assert by_row[(12, "mixed_format")].params == {"found": "alpaca", "format": "openai"}
    assert by_row[(13, "unknown_format")].params["keys"] == "completion, prompt"
    assert by_row[(14, "duplicate_row")].params == {"first_row": 1}
    invalid = by_row[(2, "invalid_json")]
    assert invalid.params["line"] == 2 and invalid.params["column"] > 1
    for issue in report.issues:
        assert issue.severity == SEVERITY[issue.code]
        assert issue.code in MESSAGES_EN and "{" not in issue.message  # fully rendered
    assert "messages[1].content" in by_row[(6, "empty_field")].message
    assert "assistant" in by_row[(11, "last_turn_not_assistant")].message


def test_dropped_rows_keep_their_original_text(tmp_path: Path) -> None:
    dropped = tmp_path / "dropped.jsonl"
    validate_file(FIXTURE, tmp_path / "n.jsonl", dropped)
    records = [json.loads(line) for line in dropped.read_text(encoding="utf-8").splitlines()]
    source = FIXTURE.read_text(encoding="utf-8").splitlines()

    assert [r["row"] for r in records] == [2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 18, 19]
    assert all(r["raw"] == source[r["row"] - 1] for r in records)
    first = records[0]["errors"][0]
    assert first["code"] == "invalid_json" and first["message"].startswith("This is not valid")
    assert records[2]["errors"][0]["field"] == "messages[0].content"


def test_normalized_rows_are_the_valid_ones(tmp_path: Path) -> None:
    normalized = tmp_path / "n.jsonl"
    validate_file(FIXTURE, normalized, tmp_path / "d.jsonl")
    rows = [json.loads(line) for line in normalized.read_text(encoding="utf-8").splitlines()]
    assert [len(r["messages"]) for r in rows] == [3, 3, 4]
    assert rows[0] == rows[1]
