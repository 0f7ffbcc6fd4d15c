"""Report shape: duplicates, the max_issues cap with full counts, JSON serialization."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from string import Formatter

import pytest

from app.datasets import MESSAGES_EN, SEVERITY, catalog_key, validate_file
from app.datasets.messages import FILE_LEVEL_CODES


def _jsonl(tmp_path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return src


def test_duplicates_name_the_first_copy_and_stay_valid(tmp_path: Path) -> None:
    a = {"instruction": "Hi", "output": "Hello"}
    b = {"instruction": "Bye", "output": "Ciao"}
    # Same normalized text even though the fields differ: instruction+input is joined.
    c = {"instruction": "Hi\nthere", "input": "", "output": "Hello"}
    d = {"instruction": "Hi", "input": "there", "output": "Hello"}
    report = validate_file(_jsonl(tmp_path, [a, b, a, c, d, a]), tmp_path / "n", tmp_path / "d")
    dups = [(i.row, i.params["first_row"]) for i in report.issues if i.code == "duplicate_row"]
    assert dups == [(3, 1), (5, 4), (6, 1)]
    assert (report.valid_rows, report.invalid_rows, report.warnings) == (6, 0, 3)
    assert len((tmp_path / "n").read_text(encoding="utf-8").splitlines()) == 6


def test_max_issues_caps_the_list_but_counts_everything(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [{"instruction": f"q{i}"} for i in range(50)]
    rows += [{"instruction": "q", "output": 5}] * 7 + [{"instruction": "ok", "output": "ok"}]
    report = validate_file(_jsonl(tmp_path, rows), tmp_path / "n", tmp_path / "d", max_issues=10)
    assert len(report.issues) == 10 and report.issues_truncated
    assert [i.row for i in report.issues] == list(range(1, 11))
    assert report.counts == {"missing_field": 50, "wrong_type": 7}
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (58, 1, 57)
    # Every dropped row is in the dropped file, not just the reported ones.
    assert len((tmp_path / "d").read_text(encoding="utf-8").splitlines()) == 57


def test_file_level_issues_survive_a_zero_cap(tmp_path: Path) -> None:
    report = validate_file(
        _jsonl(tmp_path, [{"x": 1}]), tmp_path / "n", tmp_path / "d", max_issues=0
    )
    assert [(i.row, i.code) for i in report.issues] == [(None, "no_valid_rows")]
    assert report.counts == {"unknown_format": 1, "no_valid_rows": 1}
    assert report.issues_truncated and not report.ok


def test_report_is_json_serializable(tmp_path: Path) -> None:
    rows = [{"instruction": "Hi", "output": "Hello"}, {"instruction": "Hi"}]
    report = validate_file(_jsonl(tmp_path, rows), tmp_path / "n", tmp_path / "d")
    data = json.loads(json.dumps(report.model_dump(mode="json")))
    assert data["container"] == "jsonl" and data["format"] == "alpaca" and data["ok"] is True
    assert data["issues"][0] == {
        "row": 2,
        "field": "output",
        "code": "missing_field",
        "severity": "error",
        "message": "The required field 'output' is missing. Add it (the alpaca format needs it) "
        "or remove the row.",
        "params": {"format": "alpaca"},
    }


def test_every_code_has_a_severity_and_a_wellformed_template() -> None:
    assert set(SEVERITY) == set(MESSAGES_EN)
    assert FILE_LEVEL_CODES < set(MESSAGES_EN)
    assert {c for c, s in SEVERITY.items() if s == "warning"} == {"blank_row", "duplicate_row"}
    for code, template in MESSAGES_EN.items():
        names = {name for _, name, _, _ in Formatter().parse(template) if name}
        assert all(name.isidentifier() for name in names), code
        assert catalog_key(code) == f"datasets.issue.{code}"


def test_caller_mistakes_raise(tmp_path: Path) -> None:
    src = _jsonl(tmp_path, [{"instruction": "Hi", "output": "Hello"}])
    with pytest.raises(ValueError, match="max_issues"):
        validate_file(src, tmp_path / "n", tmp_path / "d", max_issues=-1)
    with pytest.raises(ValueError, match="unknown fields"):
        validate_file(src, tmp_path / "n", tmp_path / "d", column_map={"answer": "x"})


def test_column_map_renames_json_keys_too(tmp_path: Path) -> None:
    src = _jsonl(tmp_path, [{"question": "Hi", "answer": "Hello"}, {"question": "Hi"}])
    report = validate_file(
        src,
        tmp_path / "n",
        tmp_path / "d",
        column_map={"instruction": "question", "output": "answer"},
    )
    assert report.valid_rows == 1
    assert [(i.row, i.code, i.field) for i in report.issues] == [(2, "missing_field", "answer")]
