"""Collects issues while rows stream by and builds the final `ValidationReport`.

Counters are plain attributes, not pydantic fields, because they change once per row; the
pydantic model is built once at the end.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from app.datasets.messages import SEVERITY, render
from app.datasets.models import Container, Issue, Problem, Schema, Severity, ValidationReport


def printable(value: Any) -> Any:
    """`value` with half-characters (lone surrogates, from JSON `\\ud800` escapes) written as
    escapes again: the file's own text (a role, a key, a column name) is quoted in messages,
    and the report must still be UTF-8 to be saved and sent."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


class ReportBuilder:
    """Counts every issue; keeps the first `max_issues` row-level ones plus all file-level ones."""

    def __init__(self, max_issues: int) -> None:
        self.max_issues = max_issues
        self.counts: Counter[str] = Counter()
        self.file_issues: list[dict[str, Any]] = []
        self.row_issues: list[dict[str, Any]] = []
        self.warnings = 0
        self.total_rows = self.valid_rows = self.invalid_rows = 0

    def add(self, row: int | None, problem: Problem, field: str | None = None) -> dict[str, Any]:
        """Record one issue; `field` overrides problem.field (e.g. renamed to a CSV column).
        Returns the issue as a dict (for the dropped-rows file)."""
        code = problem.code
        severity = SEVERITY.get(code, Severity.error)
        field = printable(problem.field if field is None else field)
        params = printable(problem.params)
        issue = {
            "row": row,
            "field": field,
            "code": code,
            "severity": severity.value,
            "message": render(code, row, field, params),
            "params": params,
        }
        self.counts[code] += 1
        if severity is Severity.warning:
            self.warnings += 1
        if row is None:
            self.file_issues.append(issue)
        elif len(self.row_issues) < self.max_issues:
            self.row_issues.append(issue)
        return issue

    @property
    def has_file_error(self) -> bool:
        return any(i["severity"] == Severity.error.value for i in self.file_issues)

    def finish(self, container: Container | None, schema: Schema | None) -> ValidationReport:
        if self.valid_rows == 0 and not self.has_file_error:
            self.add(None, Problem("no_valid_rows", None, {"total_rows": self.total_rows}))
        row_issue_count = sum(self.counts.values()) - len(self.file_issues)
        return ValidationReport(
            container=container,
            format=schema,
            total_rows=self.total_rows,
            valid_rows=self.valid_rows,
            invalid_rows=self.invalid_rows,
            warnings=self.warnings,
            counts=dict(self.counts),
            issues=[Issue.model_validate(i) for i in self.file_issues + self.row_issues],
            issues_truncated=row_issue_count > len(self.row_issues),
            max_issues=self.max_issues,
        )
