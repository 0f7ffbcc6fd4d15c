"""Reading pages of a normalized JSONL file for the dataset preview UI."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any


def read_preview(path: Path, offset: int = 0, limit: int = 20) -> list[dict[str, Any]]:
    """Rows `offset` .. `offset + limit - 1` (0-based) of a normalized file, parsed.

    Streams past the skipped lines instead of loading the file; fine for the first pages a
    person clicks through. An offset past the end gives [].
    """
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit must be >= 0")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in islice(f, offset, offset + limit)]
