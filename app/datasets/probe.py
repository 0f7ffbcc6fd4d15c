"""First pass over an upload: is it UTF-8 text at all, and which container does it look like?

Encoding is checked for the whole file up front (1 MiB at a time, nothing kept) so that a bad
byte deep in the file is a clean file-level error instead of half a dataset. Decoding 200 MB
costs well under a second, far less than parsing it.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from pathlib import Path

from app.datasets.models import Container, Problem

CHUNK_BYTES = 1 << 20
HEAD_CHARS = 64 * 1024  # enough text to look at the first rows / the CSV header

# UTF-32 marks first: the UTF-32LE mark starts with the UTF-16LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "UTF-32LE"),
    (codecs.BOM_UTF32_BE, "UTF-32BE"),
    (codecs.BOM_UTF16_LE, "UTF-16LE"),
    (codecs.BOM_UTF16_BE, "UTF-16BE"),
)
# Formats people upload by mistake; naming them tells the user what to export instead.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip archive, e.g. .xlsx"),
    (b"\x1f\x8b", "gzip"),
    (b"PAR1", "parquet"),
    (b"%PDF", "pdf"),
    (b"SQLite format 3\x00", "sqlite"),
    (b"\xd0\xcf\x11\xe0", "old Office file, e.g. .xls"),
)
_DELIMITERS = (",", "\t", ";", "|")


@dataclass(slots=True)
class Probe:
    """What the first pass learned. `head` is the start of the text (BOM removed)."""

    problem: Problem | None
    head: str = ""


def _not_utf8(encoding: str, data: bytes, offset: int, line: int) -> Problem:
    byte = f"0x{data[0]:02X}" if data else "(end of file)"
    params = {"encoding": encoding, "byte": byte, "offset": offset, "line": line}
    return Problem("not_utf8", None, params)


def _sniff_nul(first: bytes) -> Problem:
    """NUL bytes: UTF-16 without a BOM (every other byte is NUL for ASCII text) or binary."""
    sample = first[:4096]
    half = max(len(sample) // 2, 1)
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    nul = sample.find(0)
    line = sample.count(b"\n", 0, max(nul, 0)) + 1
    if odd_nuls > half * 0.3 and even_nuls < half * 0.05:
        return _not_utf8("UTF-16LE", sample[nul:], nul, line)
    if even_nuls > half * 0.3 and odd_nuls < half * 0.05:
        return _not_utf8("UTF-16BE", sample[nul:], nul, line)
    return Problem("binary_file", None, {"kind": "contains NUL bytes"})


def probe_file(path: Path) -> Probe:
    """Check encoding (UTF-8, optional BOM) and emptiness; return the head of the text."""
    with path.open("rb") as f:
        first = f.read(CHUNK_BYTES)
        if not first:
            return Probe(Problem("empty_file"))
        for bom, name in _BOMS:
            if first.startswith(bom):
                return Probe(_not_utf8(name, first, 0, 1))
        for magic, kind in _MAGIC:
            if first.startswith(magic):
                return Probe(Problem("binary_file", None, {"kind": kind}))
        if b"\x00" in first:
            return Probe(_sniff_nul(first))

        bom_len = len(codecs.BOM_UTF8) if first.startswith(codecs.BOM_UTF8) else 0
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        head: list[str] = []
        head_len = 0
        seen_text = False
        chunk_start, lines_before = 0, 0  # absolute offset / newlines before `chunk`
        chunk = first
        while True:
            final = not chunk
            data = chunk[bom_len:] if chunk_start == 0 else chunk
            skip = len(chunk) - len(data)
            if b"\x00" in data:
                return Probe(Problem("binary_file", None, {"kind": "contains NUL bytes"}))
            carried = decoder.getstate()[0]  # bytes of a character split across chunks
            try:
                text = decoder.decode(data, final)
            except UnicodeDecodeError as exc:
                # exc.start counts from the carried-over bytes, which belong to the last chunk.
                pos = skip + exc.start - len(carried)
                line = lines_before + chunk[: max(pos, 0)].count(b"\n") + 1
                bad = (carried + data)[exc.start : exc.start + 1]
                return Probe(_not_utf8("unknown", bad, chunk_start + pos, line))
            if not seen_text and text and not text.isspace():
                seen_text = True
            if head_len < HEAD_CHARS and text:
                head.append(text[: HEAD_CHARS - head_len])
                head_len += len(head[-1])
            if final:
                break
            chunk_start += len(chunk)
            lines_before += chunk.count(b"\n")
            chunk = f.read(CHUNK_BYTES)
    if not seen_text:
        return Probe(Problem("empty_file"))
    return Probe(None, "".join(head))


def guess_delimiter(header_line: str, filename: str | None = None) -> str:
    """Tab for .tsv, otherwise the most frequent of , TAB ; | in the header line."""
    if filename and filename.lower().endswith(".tsv"):
        return "\t"
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])  # ties keep the order above: ',' first
    return best if counts[best] else ","


def _looks_like_csv(head: str) -> bool:
    """A header line with two or more non-empty column names."""
    # Cut at "\r" too: the csv module refuses a bare carriage return inside an unquoted field
    # (csv.Error), and old Mac files end their lines with one.
    first_line = re.split(r"[\r\n]", head.lstrip("\r\n"), maxsplit=1)[0]
    cells = next(csv.reader([first_line], delimiter=guess_delimiter(first_line)), [])
    return len(cells) >= 2 and all(c.strip() for c in cells)


def detect_container(head: str, filename: str | None = None) -> Container | None:
    """`[` → JSON array, `{` → JSON Lines, else CSV by file name or by content, else None."""
    first = head.lstrip()[:1]
    if first == "[":
        return Container.json
    if first == "{":
        return Container.jsonl
    if filename and filename.lower().endswith((".csv", ".tsv")):
        return Container.csv
    return Container.csv if _looks_like_csv(head) else None
