"""CSV container: header detection, column mapping, and one RawRow per data record.

A column map goes from our field name to the CSV column holding it, e.g.
`{"instruction": "prompt", "output": "response"}`. Cells of the list-valued fields
(`history`, `conversations`, `messages`) hold JSON text and are parsed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

from app.datasets.jsonl import DECODER
from app.datasets.models import Problem, RawRow
from app.datasets.probe import guess_delimiter

# Same names first, then the common aliases (order = preference when several are present).
_ALIASES: dict[str, tuple[str, ...]] = {
    "instruction": ("instruction", "prompt", "question", "query"),
    "input": ("input", "context"),
    "output": ("output", "response", "answer", "completion"),
    "system": ("system", "system_prompt"),
    "history": ("history",),
    "conversations": ("conversations",),
    "messages": ("messages",),
}
FIELDS: tuple[str, ...] = tuple(_ALIASES)
JSON_FIELDS = frozenset({"history", "conversations", "messages"})
# Python's default cap is 128 KiB per cell, below some long answers. The cap is process-wide;
# raising it is safe because it only bounds a single cell, which we hold anyway.
_FIELD_LIMIT = 64 << 20


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def suggest_column_map(columns: Sequence[str]) -> dict[str, str]:
    """Guess field → column from names: same name or a known alias, case-insensitive."""
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(_norm(column), column)
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for field, aliases in _ALIASES.items():
        for alias in aliases:
            found = by_name.get(alias)
            if found is not None and found not in used:
                mapping[field] = found
                used.add(found)
                break
    return mapping


def _open_reader(text: TextIO, filename: str | None) -> tuple[Iterator[list[str]], list[str]]:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    first = text.readline()
    reader = csv.reader(chain([first], text), delimiter=guess_delimiter(first, filename))
    header = next(reader, [])
    return reader, [name.strip() for name in header]


def csv_columns(src: Path, filename: str | None = None) -> list[str]:
    """Column names from the header row (whitespace-trimmed); [] for an empty file. Bad bytes
    are replaced rather than raised: this only feeds the column-mapping UI."""
    with src.open(encoding="utf-8-sig", errors="replace", newline="") as text:
        try:
            return _open_reader(text, filename)[1]
        except csv.Error:
            return []


class CsvRows:
    """Reads the header on construction; `problems` lists file-level mapping problems
    (then nothing should be iterated); iterating yields the data records."""

    def __init__(
        self, text: TextIO, filename: str | None, column_map: dict[str, str] | None
    ) -> None:
        self._reader, self.columns = _open_reader(text, filename)
        self.mapping = dict(column_map) if column_map else suggest_column_map(self.columns)
        shown = ", ".join(self.columns) or "(none)"
        self.problems = [
            Problem("missing_column", field, {"columns": shown})
            for field, column in self.mapping.items()
            if column not in self.columns
        ]
        if not JSON_FIELDS.intersection(self.mapping) - {"history"}:
            self.problems += [
                Problem("missing_column", field, {"columns": shown})
                for field in ("instruction", "output")
                if field not in self.mapping
            ]

    def __iter__(self) -> Iterator[RawRow]:
        width = len(self.columns)
        cells = [(f, self.columns.index(c)) for f, c in self.mapping.items() if c in self.columns]
        number = 0
        try:
            for number, record in enumerate(self._reader, 1):
                yield self._row(number, record, width, cells)
        except csv.Error as exc:
            yield RawRow(
                None, problem=Problem("invalid_csv", None, {"detail": str(exc), "last_row": number})
            )

    def _row(
        self, number: int, record: list[str], width: int, cells: list[tuple[str, int]]
    ) -> RawRow:
        if not any(cell.strip() for cell in record):
            return RawRow(number, blank=True)
        raw: dict[str, Any] = dict(zip(self.columns, record, strict=False))
        if len(record) > width:
            raw["_extra"] = record[width:]
            if any(cell.strip() for cell in record[width:]):
                counts = {"found": len(record), "expected": width}
                return RawRow(number, None, raw, Problem("column_count", None, counts))
        value: dict[str, Any] = {}
        for field, index in cells:
            cell = record[index] if index < len(record) else ""  # short rows: trailing blanks
            if field not in JSON_FIELDS:
                value[field] = cell
            elif cell.strip():
                try:
                    value[field] = DECODER.decode(cell)
                except json.JSONDecodeError as exc:
                    params = {"detail": exc.msg, "line": exc.lineno, "column": exc.colno}
                    return RawRow(number, None, raw, Problem("invalid_json", field, params))
        return RawRow(number, value, raw)
