"""Asking a worker to render one dataset row exactly as training will tokenize it."""

from __future__ import annotations

from app.errors import FieldError, InvalidInput
from app.models import Dataset
from app.queue import TaskName, enqueue
from app.services import worker_results


def request_preview(dataset: Dataset, row: int, owner_id: int) -> str:
    """Queue the preview of `row` (1-based, in the normalized rows); returns the request id."""
    if not 1 <= row <= dataset.row_count:
        raise InvalidInput(
            [FieldError("row", "errors.row_out_of_range", {"row": row, "rows": dataset.row_count})]
        )
    request_id = worker_results.new_request_id()
    worker_results.mark_pending(request_id, owner_id)
    enqueue(TaskName.PREVIEW_TEMPLATE, request_id, dataset.id, row)
    return request_id
