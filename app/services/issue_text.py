"""Dataset issues in the reader's language: the issue's code and params through the catalog."""

from __future__ import annotations

from typing import Any

from app import datasets as validation
from app.i18n import Translator


def issue_message(t: Translator, issue: validation.Issue) -> str:
    key = validation.catalog_key(issue.code)
    if t(key) == key:  # no catalog entry: the validator's own English text
        return issue.message
    params: dict[str, Any] = {**issue.params, "row": issue.row, "field": issue.field}
    try:
        return t(key, **params)
    except (KeyError, IndexError, ValueError):
        return issue.message


def issues_public(t: Translator, report: validation.ValidationReport) -> list[dict[str, Any]]:
    return [
        {
            "row": i.row,
            "field": i.field,
            "code": i.code,
            "severity": i.severity.value,
            "message": issue_message(t, i),
        }
        for i in report.issues
    ]
