"""JSON Lines reader: one JSON value per line, streamed line by line from a text file."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import TextIO

from app.datasets.models import Problem, RawRow

# strict=False accepts raw tabs/newline-like control characters inside strings: they are common
# in hand-made files, harmless for training, and re-escaped when we write the normalized file.
DECODER = json.JSONDecoder(strict=False)


def iter_jsonl(text: TextIO) -> Iterator[RawRow]:
    """Yield one RawRow per line; `row` is the 1-based line number and `raw` the line text."""
    decode = DECODER.decode
    for lineno, line in enumerate(text, 1):
        if not line or line.isspace():
            yield RawRow(lineno, blank=True)
            continue
        raw = line.rstrip("\r\n")
        try:
            value = decode(line)
        except json.JSONDecodeError:
            yield RawRow(lineno, None, raw, _invalid(raw, lineno))
            continue
        yield RawRow(lineno, value, raw)


def _invalid(raw: str, lineno: int) -> Problem:
    """Re-parse without the newline so an error at the end of the line gets its real column
    (rare path: only for broken lines)."""
    try:
        DECODER.decode(raw)
    except json.JSONDecodeError as exc:
        params = {"detail": exc.msg, "line": lineno, "column": exc.colno}
    else:  # only the line ending was the problem, e.g. a stray '\r' inside
        params = {"detail": "unexpected line break", "line": lineno, "column": len(raw) + 1}
    return Problem("invalid_json", None, params)


def drop_trailing_blanks(rows: Iterable[RawRow]) -> Iterator[RawRow]:
    """Hold blank rows back until a data row follows, so the usual trailing empty lines at the
    end of a file are not reported while blank rows in the middle still are."""
    held: list[RawRow] = []
    for item in rows:
        if item.blank:
            held.append(item)
            continue
        if held:
            yield from held
            held.clear()
        yield item
