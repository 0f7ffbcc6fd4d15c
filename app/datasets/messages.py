"""English message templates and severities for every dataset issue code.

Templates use `{name}` placeholders like the app catalogs in `app/i18n`; each may use `{row}`,
`{field}` and any key of the issue's `params`. A translation team can copy `MESSAGES_EN` into
the catalogs under `catalog_key(code)` and add zh-CN; the codes themselves never change.
"""

from __future__ import annotations

from typing import Any

from app.datasets.models import Severity

MESSAGES_EN: dict[str, str] = {
    # --- file level -------------------------------------------------------------------------
    "empty_file": ("The file is empty. Upload a file that contains at least one training example."),
    "not_utf8": (
        "The file is not valid UTF-8 text (detected: {encoding}; first bad byte {byte} on "
        "line {line}, byte offset {offset}). Save the file as UTF-8 (in most editors: "
        "Save As, Encoding: UTF-8) and upload it again."
    ),
    "binary_file": (
        "The file looks like binary data ({kind}), not text. Export your data as a UTF-8 "
        "JSON, JSON Lines or CSV file and upload that instead."
    ),
    "unknown_container": (
        "Could not tell the file type: it is not a JSON array (starting with '['), not JSON "
        "Lines (one object per line) and does not look like CSV. Save it as .json, .jsonl or "
        ".csv, or choose the file type explicitly."
    ),
    "invalid_csv": (
        "The CSV file could not be read after data row {last_row} ({detail}). Check for an "
        "unclosed quote, then export the file again as UTF-8 CSV."
    ),
    "missing_column": (
        "The CSV file has no column for '{field}' (its columns are: {columns}). Add that "
        "column, or map one of the existing columns to '{field}'."
    ),
    "no_valid_rows": (
        "The file has no valid rows ({total_rows} rows checked). Fix the problems listed for "
        "the rows and upload the file again."
    ),
    # --- row level --------------------------------------------------------------------------
    "invalid_json": (
        "This is not valid JSON: {detail} (line {line}, column {column}). Fix the syntax "
        "(look for a missing comma, quote or bracket) or remove the row."
    ),
    "not_an_object": (
        "This row is a JSON {found}, but every row must be a JSON object with the fields of "
        "the {format} format. Wrap the data in an object or remove the row."
    ),
    "blank_row": "This row is blank and was skipped. Remove empty rows from the file.",
    "column_count": (
        "This CSV row has {found} values but the header has {expected} columns. Put quotes "
        "around values that contain the delimiter, or remove the extra values."
    ),
    "missing_field": (
        "The required field '{field}' is missing. Add it (the {format} format needs it) or "
        "remove the row."
    ),
    "empty_field": (
        "The field '{field}' is empty. Write the text it should contain or remove the row."
    ),
    "wrong_type": (
        "The field '{field}' has the wrong type: expected {expected}, found {found}. Change "
        "its value to the expected type."
    ),
    "unknown_role": (
        "The turn '{field}' has the role '{role}', which the {format} format does not know. "
        "Use one of: {allowed}."
    ),
    "turn_order": (
        "The turn '{field}' ({role}) is out of order after '{previous}'. A conversation is an "
        "optional system turn first, then user and assistant turns taking turns (a tool turn "
        "only right after an assistant tool call). Reorder, merge or remove turns."
    ),
    "last_turn_not_assistant": (
        "The conversation ends with a {role} turn ('{field}'); it must end with an assistant "
        "reply, which is what the model learns. Add the reply or remove the last turn."
    ),
    "unknown_format": (
        "This row does not look like {format} data (its keys: {keys}; expected: {expected}). "
        "Rename the fields, or choose the format the file really uses."
    ),
    "mixed_format": (
        "This row is in {found} format but the file was detected as {format}. Convert all "
        "rows to one format, or split them into separate files."
    ),
    "duplicate_row": (
        "This row is identical to row {first_row} after normalization. Remove one copy so the "
        "model does not over-learn it."
    ),
    "invalid_text": (
        "The field '{field}' holds the escape {escape}, half of a character pair (an unpaired "
        "surrogate), which is not text. Write the whole character or remove the escape."
    ),
}

# Severity is a property of the code, not of the occurrence, so the UI can filter by code.
SEVERITY: dict[str, Severity] = dict.fromkeys(MESSAGES_EN, Severity.error)
SEVERITY.update({"blank_row": Severity.warning, "duplicate_row": Severity.warning})

# Codes whose issues always have `row = None`.
FILE_LEVEL_CODES: frozenset[str] = frozenset(
    {
        "empty_file",
        "not_utf8",
        "binary_file",
        "unknown_container",
        "invalid_csv",
        "missing_column",
        "no_valid_rows",
    }
)


class _Params(dict[str, Any]):
    """Leaves an unknown placeholder visible instead of raising, so a template typo or a
    missing param never turns a validation report into a crash."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def catalog_key(code: str) -> str:
    """The key this code would have in the app's i18n catalogs."""
    return f"datasets.issue.{code}"


def render(code: str, row: int | None, field: str | None, params: dict[str, Any]) -> str:
    """English text for one issue."""
    template = MESSAGES_EN.get(code, code)
    return template.format_map(_Params(params, row=row, field=field))
