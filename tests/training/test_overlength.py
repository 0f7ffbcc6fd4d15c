"""Rows longer than max_length: truncated (kept, cut from the right) or dropped (left out),
and counted either way, on rows whose token lengths the test measures with the tokenizer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.training.conftest import chat
from workers.ml.chat_format import tokenize_conversation
from workers.training.data import tokenize_rows

MAX_LENGTH = 48


def rows_of_known_lengths(tokenizer: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """Answers of growing length around MAX_LENGTH; returns the rows and their token lengths."""
    rows = [chat(f"Question {i}?", "word " * (4 * i + 1)) for i in range(12)]
    lengths = [len(tokenize_conversation(tokenizer, r["messages"]).input_ids) for r in rows]
    assert 0 < sum(n > MAX_LENGTH for n in lengths) < len(rows)  # both kinds present
    return rows, lengths


@pytest.mark.parametrize("mode", ["truncate", "drop"])
def test_overlength_rows_are_truncated_or_dropped_exactly(tiny_tokenizer: Any, mode: str) -> None:
    rows, lengths = rows_of_known_lengths(tiny_tokenizer)
    over = [i for i, n in enumerate(lengths) if n > MAX_LENGTH]
    examples, stats = tokenize_rows(tiny_tokenizer, rows, MAX_LENGTH, overlength=mode)
    if mode == "truncate":
        assert [len(e) for e in examples] == [min(n, MAX_LENGTH) for n in lengths]
        assert stats.truncated == len(over) and not stats.dropped
    else:
        kept = [i for i in range(len(rows)) if i not in over]
        full = [tokenize_conversation(tiny_tokenizer, rows[i]["messages"]) for i in kept]
        assert [e.input_ids.tolist() for e in examples] == [f.input_ids for f in full]
        assert stats.truncated == 0 and stats.dropped == {"over_max_length": len(over)}
