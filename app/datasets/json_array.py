"""Incremental reader for a top-level JSON array, so a 200 MB file is never held in memory.

The text is read in chunks; each element is parsed in place with `JSONDecoder.raw_decode` (C
speed). Only when that fails do we look for the element's end with a small bracket/string
scanner, which tells "the element continues in the next chunk" (read more, retry) apart from
"the element is broken" (report it, resume after it). `row` is the 1-based element index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, TextIO

from app.datasets.jsonl import DECODER
from app.datasets.models import Problem, RawRow

CHUNK_CHARS = 1 << 20
# No real example is this large; beyond it we assume a broken file (e.g. a missing quote) and
# stop, which also bounds the memory a broken file can take.
MAX_ELEMENT_CHARS = 16 << 20

_NON_WS = re.compile(r"[^ \t\n\r]")
_TOKEN = re.compile(r'["{}\[\],]')
# Rest of a string after its opening quote; possessive so a missing quote cannot backtrack.
_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.S)


class _Stream:
    """A sliding text window: `buf[pos:]` is unread; consumed text is dropped on refill."""

    def __init__(self, text: TextIO, chunk_chars: int) -> None:
        self.text, self.chunk_chars = text, chunk_chars
        self.buf, self.pos, self.eof = "", 0, False
        self.line0, self.col0 = 1, 0  # line and 0-based column of buf[0]

    def more(self) -> bool:
        """Drop consumed text and append one chunk; False at end of file."""
        if self.eof:
            return False
        if self.pos:
            newline = self.buf.rfind("\n", 0, self.pos)
            if newline < 0:
                self.col0 += self.pos
            else:
                self.line0 += self.buf.count("\n", 0, self.pos)
                self.col0 = self.pos - newline - 1
            self.buf, self.pos = self.buf[self.pos :], 0
        data = self.text.read(self.chunk_chars)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def peek(self) -> str:
        """Skip whitespace; return the next character ("" at end of file)."""
        while True:
            match = _NON_WS.search(self.buf, self.pos)
            if match:
                self.pos = match.start()
                return match.group()
            self.pos = len(self.buf)
            if not self.more():
                return ""

    def where(self, index: int) -> dict[str, int]:
        """1-based line and column of buf[index], for messages."""
        newline = self.buf.rfind("\n", 0, index)
        line = self.line0 + self.buf.count("\n", 0, index)
        column = (index + self.col0 if newline < 0 else index - newline - 1) + 1
        return {"line": line, "column": column}

    def problem(self, detail: str, index: int) -> Problem:
        return Problem("invalid_json", None, {"detail": detail, **self.where(index)})


def scan_end(buf: str, pos: int) -> int:
    """End index of the JSON value starting at `pos`, judged only by brackets and strings,
    or -1 if it does not end within `buf`. Always > pos, so a caller always makes progress.

    A closer that does not match the innermost opener closes back to its own opener (so
    `{"a": [4}` ends at the `}`): that is the likeliest intent and keeps one typo from
    swallowing the rest of the file."""
    stack: list[str] = []
    i = pos
    while True:
        match = _TOKEN.search(buf, i)
        if match is None:
            return -1
        char, j = match.group(), match.start()
        i = j + 1
        if char == '"':
            rest = _STRING_REST.match(buf, i)
            if rest is None:
                return -1
            i = rest.end()
        elif char in "{[":
            stack.append(char)
        elif not stack:  # ',' or a closer that belongs to the array: the value ends here
            return max(j, pos + 1)
        elif char != ",":
            opener = "{" if char == "}" else "["
            if opener in stack:  # else a stray closer inside the value: ignore it
                del stack[len(stack) - 1 - stack[::-1].index(opener) :]
                if not stack:
                    return j + 1


def _read_element(s: _Stream, max_chars: int) -> tuple[Any, int, json.JSONDecodeError | None]:
    """Parse the value at s.pos, reading more text as needed. Returns (value, end, error);
    end is -1 when the value does not end before EOF or grows beyond max_chars."""
    raw_decode = DECODER.raw_decode
    while True:
        try:
            value, end = raw_decode(s.buf, s.pos)
        except json.JSONDecodeError as exc:
            end = scan_end(s.buf, s.pos)
            if end < 0 and len(s.buf) - s.pos < max_chars and s.more():
                continue
            return None, end, exc
        # A number may continue in the next chunk: only trust a value that ends before the buffer.
        if end == len(s.buf) and s.more():
            continue
        return value, end, None


def iter_json_array(
    text: TextIO, chunk_chars: int = CHUNK_CHARS, max_element_chars: int = MAX_ELEMENT_CHARS
) -> Iterator[RawRow]:
    """Yield one RawRow per element; `raw` is the parsed value, or the text if it does not parse.
    File-level syntax problems (no '[', unclosed array, text after ']') come with row=None."""
    s = _Stream(text, chunk_chars)
    s.more()
    if s.peek() != "[":
        yield RawRow(None, problem=s.problem("the file must start with '['", s.pos))
        return
    s.pos += 1
    index, missing_comma = 0, False
    while True:
        char = s.peek()
        if char == "":
            yield RawRow(None, problem=s.problem("the array is not closed with ']'", s.pos))
            return
        if char == "]":  # also accepts a trailing comma before ']': harmless, so we are lenient
            s.pos += 1
            if s.peek():
                detail = "unexpected text after the closing ']'"
                yield RawRow(None, problem=s.problem(detail, s.pos))
            return
        index += 1
        value, end, error = _read_element(s, max_element_chars)
        start = s.pos  # only now: reading more text shifts the window
        if end < 0:  # runs to EOF (or absurdly long): nothing after it can be trusted
            detail = error.msg if error else "element does not end"
            raw = s.buf[start : start + 10_000]
            yield RawRow(index, None, raw, s.problem(detail, error.pos if error else start))
            detail = f"element {index} does not end before the end of the file"
            yield RawRow(None, problem=s.problem(detail, start))
            return
        if error is not None:
            yield RawRow(index, None, s.buf[start:end], s.problem(error.msg, error.pos))
        elif missing_comma:
            problem = s.problem("missing ',' before this element", start)
            yield RawRow(index, None, s.buf[start:end], problem)
        else:
            yield RawRow(index, value, value)
        s.pos = end
        char = s.peek()
        missing_comma = char not in (",", "]", "")
        if char == ",":
            s.pos += 1
