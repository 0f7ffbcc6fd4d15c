"""`validate_file`: stream an upload once, write normalized rows and dropped rows, and report.

Bad data never raises: every problem ends up in the report. Only caller mistakes (a negative
`max_issues`, an unknown field in `column_map`) and I/O errors on the given paths raise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from hashlib import blake2b
from pathlib import Path
from typing import Any, BinaryIO

from app.datasets.csvfile import FIELDS, CsvRows
from app.datasets.json_array import iter_json_array
from app.datasets.jsonl import drop_trailing_blanks, iter_jsonl
from app.datasets.models import Container, Problem, RawRow, Schema, ValidationReport
from app.datasets.probe import detect_container, probe_file
from app.datasets.report import ReportBuilder
from app.datasets.schemas import CONVERTERS, EXPECTED_KEYS, classify, detect_schema, json_type
from app.datasets.turns import unpaired_surrogate

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_WRITE_BUFFER = 1 << 20
_ANY_FORMAT = "alpaca/sharegpt/openai"


def _rename(field: str | None, alias: dict[str, str]) -> str | None:
    """Show the user's own column name: `output` → `response` when output was mapped from it."""
    if not field or not alias:
        return field
    cut = len(field)
    for sep in "[.":
        found = field.find(sep)
        if 0 <= found < cut:
            cut = found
    return alias.get(field[:cut], field[:cut]) + field[cut:]


def _remap(value: dict[str, Any], column_map: dict[str, str]) -> dict[str, Any]:
    sources = set(column_map.values())
    out = {k: v for k, v in value.items() if k not in sources}
    out.update({f: value[c] for f, c in column_map.items() if c in value})
    return out


class _Run:
    """State of one validation pass: the outputs, the detected schema, seen-row hashes."""

    def __init__(
        self,
        report: ReportBuilder,
        schema: Schema | None,
        normalized: BinaryIO,
        dropped: BinaryIO,
        alias: dict[str, str],
        remap: dict[str, str] | None,
    ) -> None:
        self.report, self.schema = report, schema
        self.normalized, self.dropped = normalized, dropped
        self.alias, self.remap = alias, remap
        # 16-byte digest → first row: ~100 bytes per unique row, not the row text itself.
        self.seen: dict[bytes, int] = {}

    def feed(self, item: RawRow) -> None:
        report = self.report
        if item.row is None:
            if item.problem is not None:
                report.add(None, item.problem)
            return
        if item.blank:
            report.add(item.row, Problem("blank_row"))
            return
        report.total_rows += 1
        if item.problem is not None:
            self._drop(item, [item.problem])
            return
        value = item.value
        if type(value) is not dict:
            params = {"found": json_type(value), "format": self.schema or _ANY_FORMAT}
            self._drop(item, [Problem("not_an_object", None, params)])
            return
        if self.remap:
            value = _remap(value, self.remap)
        kind = classify(value)
        if self.schema is None:  # nothing recognisable in the first rows: adopt the first match
            self.schema = kind
        if kind is None or kind is not self.schema:
            self._drop(item, [self._format_problem(value, kind)])
            return
        turns, problems = CONVERTERS[kind](value)
        if problems:
            self._drop(item, problems)
            return
        messages = [{"role": t[0], "content": t[1]} for t in turns]
        try:
            line = _ENCODE({"messages": messages}).encode() + b"\n"
        except UnicodeEncodeError:  # rare, so looked for only when encoding fails
            self._drop(item, unpaired_surrogate(turns))
            return
        first = self.seen.setdefault(blake2b(line, digest_size=16).digest(), item.row)
        if first != item.row:
            report.add(item.row, Problem("duplicate_row", None, {"first_row": first}))
        self.normalized.write(line)
        report.valid_rows += 1

    def _format_problem(self, value: dict[str, Any], kind: Schema | None) -> Problem:
        if kind is None:
            keys = ", ".join(sorted(value)[:10]) or "(none)"
            params = {
                "format": self.schema or _ANY_FORMAT,
                "keys": keys,
                "expected": EXPECTED_KEYS[self.schema],
            }
            return Problem("unknown_format", None, params)
        return Problem("mixed_format", None, {"found": kind.value, "format": self.schema})

    def _drop(self, item: RawRow, problems: list[Problem]) -> None:
        self.report.invalid_rows += 1
        row = item.row
        errors = []
        for problem in problems:
            issue = self.report.add(row, problem, _rename(problem.field, self.alias))
            errors.append({k: issue[k] for k in ("code", "field", "message", "params")})
        record = {"row": row, "errors": errors, "raw": item.raw}
        try:
            line = _ENCODE(record).encode()
        except UnicodeEncodeError:  # half a character pair in `raw`: keep it an escape (ASCII)
            line = json.dumps(record, separators=(",", ":")).encode()
        self.dropped.write(line + b"\n")


def _rows(
    container: Container,
    text: Any,
    filename: str | None,
    column_map: dict[str, str] | None,
    report: ReportBuilder,
) -> tuple[Iterator[RawRow], dict[str, str]]:
    """The container's row iterator and the field → user-name alias for messages."""
    if container is Container.jsonl:
        return drop_trailing_blanks(iter_jsonl(text)), dict(column_map or {})
    if container is Container.json:
        return iter_json_array(text), dict(column_map or {})
    csv_rows = CsvRows(text, filename, column_map)
    for problem in csv_rows.problems:
        report.add(None, problem)
    if csv_rows.problems:
        return iter(()), csv_rows.mapping
    return drop_trailing_blanks(iter(csv_rows)), csv_rows.mapping


def validate_file(
    src: Path,
    normalized_out: Path,
    dropped_out: Path,
    *,
    filename: str | None = None,
    container: Container | None = None,
    schema: Schema | None = None,
    column_map: dict[str, str] | None = None,
    max_issues: int = 1000,
) -> ValidationReport:
    """Validate `src` row by row, streaming. Valid rows go to `normalized_out` as
    `{"messages": [...]}` JSON lines, rejected rows to `dropped_out` as
    `{"row", "errors", "raw"}` lines; both files are always (re)created.

    `filename` is the name the user uploaded (used to recognise .csv/.tsv); `container` and
    `schema` override detection; `column_map` maps field → column/key name (CSV, or renamed
    keys in JSON). See `app.datasets.models` for what `row` means per container.
    """
    if max_issues < 0:
        raise ValueError("max_issues must be >= 0")
    unknown = set(column_map or {}) - set(FIELDS)
    if unknown:
        raise ValueError(f"column_map has unknown fields {sorted(unknown)}; use {FIELDS}")
    report = ReportBuilder(max_issues)
    filename = filename or src.name
    with (
        normalized_out.open("wb", buffering=_WRITE_BUFFER) as normalized,
        dropped_out.open("wb", buffering=_WRITE_BUFFER) as dropped,
    ):
        probe = probe_file(src)
        if probe.problem is not None:
            report.add(None, probe.problem)
            return report.finish(container, schema)
        container = container or detect_container(probe.head, filename)
        if container is None:
            report.add(None, Problem("unknown_container"))
            return report.finish(None, schema)
        # csv needs newline="" to see quoted line breaks; JSON splits on "\n" only, so a stray
        # "\r" inside a string cannot cut a JSON line in two.
        newline = "" if container is Container.csv else "\n"
        with src.open(encoding="utf-8-sig", newline=newline) as text:
            rows, alias = _rows(container, text, filename, column_map, report)
            detected = schema
            if detected is None:
                detected, rows = detect_schema(rows)
            remap = column_map if container is not Container.csv and column_map else None
            run = _Run(report, detected, normalized, dropped, alias, remap)
            for item in rows:
                run.feed(item)
        return report.finish(container, run.schema)
