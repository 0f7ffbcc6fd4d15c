"""The incremental JSON-array reader: chunk boundaries, element indices, broken elements."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from app.datasets import validate_file
from app.datasets.json_array import iter_json_array, scan_end

SHAREGPT = Path(__file__).resolve().parents[1] / "data" / "datasets_sharegpt.json"


def _rows(text: str, chunk: int = 1 << 20) -> list[tuple[int | None, object, str | None]]:
    return [
        (r.row, r.value, r.problem.params["detail"] if r.problem else None)
        for r in iter_json_array(io.StringIO(text), chunk_chars=chunk)
    ]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1 << 20])
def test_any_chunk_size_gives_the_same_elements(chunk: int) -> None:
    text = SHAREGPT.read_text(encoding="utf-8")
    expected = json.loads(text)
    got = _rows(text, chunk)
    assert [row for row, _, _ in got] == [1, 2, 3]
    assert [value for _, value, _ in got] == expected
    # Numbers and escapes split across chunks.
    assert _rows('[ 12345, "a\\"b\\u00e9", {"k": [1, 2.5e3]} ]', chunk) == [
        (1, 12345, None),
        (2, 'a"bé', None),
        (3, {"k": [1, 2500.0]}, None),
    ]


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_broken_element_is_reported_and_the_rest_still_parses(chunk: int) -> None:
    text = '[\n {"a": 1},\n {"a": 2 "b": 3},\n {"a": [4}, \n {"a": 5}\n]'
    got = _rows(text, chunk)
    assert [(row, detail) for row, _, detail in got] == [
        (1, None),
        (2, "Expecting ',' delimiter"),
        (3, "Expecting ',' delimiter"),
        (4, None),
    ]
    assert got[3][1] == {"a": 5}


def test_error_position_is_line_and_column_in_the_file() -> None:
    rows = list(iter_json_array(io.StringIO('[\n  {"a": 1},\n  {"a": }\n]'), chunk_chars=4))
    assert rows[1].problem is not None
    assert (rows[1].problem.params["line"], rows[1].problem.params["column"]) == (3, 9)
    assert rows[1].raw == '{"a": }'


def test_missing_comma_between_elements() -> None:
    got = _rows('[{"a": 1} {"a": 2}, {"a": 3}]')
    assert got == [
        (1, {"a": 1}, None),
        (2, None, "missing ',' before this element"),
        (3, {"a": 3}, None),
    ]


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('[{"a": 1}, {"a": 2}', "the array is not closed with ']'"),
        ('[{"a": 1}] {"b": 2}', "unexpected text after the closing ']'"),
        ('{"a": 1}', "the file must start with '['"),
    ],
)
def test_file_level_syntax_problems(text: str, detail: str) -> None:
    got = _rows(text)
    assert got[-1] == (None, None, detail)


def test_unterminated_element_stops_with_a_file_level_problem() -> None:
    got = _rows('[{"a": 1}, {"a": "no end}, {"a": 3}]', chunk=5)
    assert [(row, detail is None) for row, _, detail in got] == [
        (1, True),
        (2, False),
        (None, False),
    ]


def test_trailing_comma_and_empty_array_are_accepted() -> None:
    assert _rows('[{"a": 1},]') == [(1, {"a": 1}, None)]
    assert _rows("[ ]") == []


def test_scan_end_ignores_brackets_inside_strings() -> None:
    text = '{"a": "}]\\"[{", "b": [1, {"c": 2}]}, {"next": 1}'
    assert scan_end(text, 0) == text.index(', {"next"')
    assert scan_end('{"a": 1', 0) == -1
    assert scan_end("bad, {}", 0) == 3
    assert scan_end('{"a": [4}, {"b": 5}', 0) == 9  # a mismatched closer closes its opener
    assert scan_end("]", 0) == 1  # always makes progress


def test_json_array_rows_are_element_indices(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    rows = [{"instruction": "q", "output": "a"}, {"instruction": "q"}, 7, {"output": ""}]
    src.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    report = validate_file(src, tmp_path / "n", tmp_path / "d")
    assert [(i.row, i.code, i.field) for i in report.issues] == [
        (2, "missing_field", "output"),
        (3, "not_an_object", None),
        (4, "missing_field", "instruction"),
        (4, "empty_field", "output"),
    ]
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (4, 1, 3)
    dropped = [json.loads(x) for x in (tmp_path / "d").read_text(encoding="utf-8").splitlines()]
    assert [d["raw"] for d in dropped] == rows[1:]
