"""Token statistics of a normalized dataset, counted exactly as training will tokenize it.

Pure ML helper: reads the normalized JSON Lines file, tokenizes each conversation with the
same `tokenize_conversation` the trainer uses, and summarizes lengths. No Celery, no database.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workers.ml.chat_format import IGNORE_INDEX, tokenize_conversation
from workers.ml.errors import ChatFormatError

HISTOGRAM_BINS = 30
LONG_ROWS_LISTED = 20


def iter_conversations(path: Path) -> Iterator[list[dict[str, str]]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)["messages"]


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def histogram(values: list[int], bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    """Equal-width bins from 0 to just above the longest row, with round edges."""
    top = max(values, default=1)
    width = max(1, math.ceil(top / bins))
    n = max(1, math.ceil((top + 1) / width))
    counts = [0] * n
    for value in values:
        counts[min(value // width, n - 1)] += 1
    return {"edges": [i * width for i in range(n + 1)], "counts": counts}


def length_counts(values: list[int]) -> list[list[int]]:
    """[[length, rows], ...] by increasing length: exact and compact (one pair per distinct
    length, so at most max-length pairs however many rows), enough to count the rows over any
    max length without tokenizing again (app.services.estimates.over_length)."""
    return [[n, count] for n, count in sorted(Counter(values).items())]


def token_stats(
    tokenizer: Any,
    normalized_path: Path,
    *,
    template: str | None,
    max_length: int,
    duplicates: int = 0,
) -> dict[str, Any]:
    lengths: list[int] = []
    trainable = 0
    long_rows: list[int] = []
    unsupported = 0
    template_used = template or "tokenizer"
    for row, messages in enumerate(iter_conversations(normalized_path), start=1):
        try:
            example = tokenize_conversation(tokenizer, messages, template=template)
        except ChatFormatError:
            unsupported += 1  # e.g. tool turns the chosen template cannot express
            continue
        template_used = example.template
        n = len(example.input_ids)
        lengths.append(n)
        trainable += sum(1 for label in example.labels[:max_length] if label != IGNORE_INDEX)
        if n > max_length:
            if len(long_rows) < LONG_ROWS_LISTED:
                long_rows.append(row)
    ordered = sorted(lengths)
    over = sum(1 for n in lengths if n > max_length)
    return {
        "rows": len(lengths),
        "unsupported_rows": unsupported,
        "template": template_used,
        "max_length": max_length,
        "tokens": {
            "total": sum(lengths),
            "min": ordered[0] if ordered else 0,
            "max": ordered[-1] if ordered else 0,
            "mean": round(sum(lengths) / len(lengths), 1) if lengths else 0,
            "p50": percentile(ordered, 50),
            "p95": percentile(ordered, 95),
        },
        "trainable_tokens": trainable,
        "over_max_length": over,
        "over_max_length_rows": long_rows,
        "duplicates": duplicates,
        "histogram": histogram(lengths),
        "length_counts": length_counts(lengths),
    }
