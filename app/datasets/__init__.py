"""Dataset parsing and validation: turn an uploaded file into normalized chat rows + a report.

Public API:
* `validate_file(src, normalized_out, dropped_out, ...) -> ValidationReport`
* `read_preview(path, offset, limit)` for the normalized JSONL
* `csv_columns(src)` and `suggest_column_map(columns)` for the CSV column-mapping step
* `split_rows(normalized_path, train_out, val_out, val_fraction, seed)`

Pure Python (stdlib + pydantic); safe to import in the web process (no torch).
"""

from app.datasets.csvfile import csv_columns, suggest_column_map
from app.datasets.messages import MESSAGES_EN, SEVERITY, catalog_key
from app.datasets.models import Container, Issue, Schema, Severity, ValidationReport
from app.datasets.preview import read_preview
from app.datasets.split import split_rows
from app.datasets.validate import validate_file

__all__ = [
    "MESSAGES_EN",
    "SEVERITY",
    "Container",
    "Issue",
    "Schema",
    "Severity",
    "ValidationReport",
    "catalog_key",
    "csv_columns",
    "read_preview",
    "split_rows",
    "suggest_column_map",
    "validate_file",
]
