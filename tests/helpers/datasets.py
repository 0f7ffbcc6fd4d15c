"""Datasets built in tests."""

from __future__ import annotations

import json


def growing_answers(count: int, words_per_row: int) -> bytes:
    """`count` conversations whose answers grow by `words_per_row` words a row, so their token
    lengths spread around a max length; returns the JSON Lines upload."""
    conversations = [
        [
            {"role": "user", "content": f"Q{i}?"},
            {"role": "assistant", "content": "ok " * (words_per_row * i + 2)},
        ]
        for i in range(count)
    ]
    return "\n".join(json.dumps({"messages": c}) for c in conversations).encode()
