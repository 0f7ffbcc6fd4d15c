"""Data types of the dataset validator: the public report models and the internal row records.

What `row` means depends on the container, because that is what the user can find in their file:

* JSON Lines: the 1-based physical line number (blank lines count, so it matches an editor).
* JSON array: the 1-based index of the element in the top-level array.
* CSV: the 1-based data record number; the header is record 0. A quoted cell may span several
  physical lines, so this is not always the line number.

File-level issues (encoding, empty file, no valid rows, ...) have `row = None`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, computed_field


class Container(StrEnum):
    """How rows are stored in the file."""

    json = "json"  # one top-level JSON array of objects
    jsonl = "jsonl"  # one JSON object per line
    csv = "csv"  # header row + one record per example


class Schema(StrEnum):
    """How one row describes a conversation."""

    alpaca = "alpaca"  # instruction / input / output (+ system, history)
    sharegpt = "sharegpt"  # conversations: [{from, value}]
    openai = "openai"  # messages: [{role, content}]


class Severity(StrEnum):
    error = "error"  # the row is dropped (or, file-level, the dataset is unusable)
    warning = "warning"  # reported, but the row is kept


class Issue(BaseModel):
    """One problem found in the file. `message` is English; `code` + `params` let the UI
    render it in another language from its own catalog."""

    row: int | None = None
    field: str | None = None
    code: str
    severity: Severity
    message: str
    params: dict[str, Any] = Field(default_factory=dict)


class ValidationReport(BaseModel):
    """Outcome of `validate_file`. JSON-serializable via `model_dump(mode="json")`.

    `total_rows` counts data rows (blank rows are skipped with a warning and not counted), so
    `total_rows == valid_rows + invalid_rows`. `counts` holds every issue found, per code, even
    those left out of `issues` once `max_issues` is reached; file-level issues are always kept
    and listed first.
    """

    container: Container | None = None
    format: Schema | None = None
    total_rows: int = 0
    valid_rows: int = 0
    invalid_rows: int = 0
    warnings: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    issues: list[Issue] = Field(default_factory=list)
    issues_truncated: bool = False
    max_issues: int = 1000

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """True when the dataset is usable: some valid rows and no file-level error."""
        file_error = any(i.row is None and i.severity == Severity.error for i in self.issues)
        return self.valid_rows > 0 and not file_error


@dataclass(slots=True)
class Problem:
    """An issue before it is numbered and rendered: cheap to create in the per-row hot path."""

    code: str
    field: str | None = None
    # dataclasses.field spelled out: the `field` attribute above shadows a bare `field` here.
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(slots=True)
class RawRow:
    """One row as a container reader yields it, before any schema checks.

    `row is None` marks a file-level problem reported by the reader (e.g. an unclosed array).
    `raw` is what goes to the dropped file if the row is rejected: original text where we have it,
    otherwise the parsed value.
    """

    row: int | None
    value: Any = None
    raw: Any = None
    problem: Problem | None = None
    blank: bool = False
