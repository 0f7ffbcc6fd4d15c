"""File-level problems: empty, not UTF-8, binary; and a UTF-8 BOM is accepted."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from app.datasets import Container, ValidationReport, validate_file

ROW = {"instruction": "Say café", "output": "Café!"}
LINE = json.dumps(ROW, ensure_ascii=False) + "\n"


def _check(path: Path, tmp_path: Path) -> ValidationReport:
    normalized, dropped = tmp_path / "n.jsonl", tmp_path / "d.jsonl"
    report = validate_file(path, normalized, dropped)
    # Outputs always exist, so a caller can rename them without special cases.
    assert normalized.exists() and dropped.exists()
    return report


def _only_issue(report: ValidationReport, code: str) -> dict[str, object]:
    assert [(i.row, i.code, i.severity) for i in report.issues] == [(None, code, "error")]
    assert report.counts == {code: 1}
    assert not report.ok and report.total_rows == 0
    return report.issues[0].params


@pytest.mark.parametrize("content", [b"", b"  \n\r\n\t ", b"\xef\xbb\xbf\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "empty.jsonl"
    src.write_bytes(content)
    _only_issue(_check(src, tmp_path), "empty_file")


def test_latin1_file_names_the_bad_byte_and_the_fix(tmp_path: Path) -> None:
    src = tmp_path / "latin1.jsonl"
    src.write_bytes(LINE.encode("utf-8") + LINE.encode("latin-1"))
    report = _check(src, tmp_path)
    params = _only_issue(report, "not_utf8")
    utf8_len = len(LINE.encode("utf-8"))
    assert params == {
        "encoding": "unknown",
        "byte": "0xE9",  # é in latin-1
        "offset": utf8_len + LINE.index("é"),
        "line": 2,
    }
    assert "Save the file as UTF-8" in report.issues[0].message


@pytest.mark.parametrize(
    ("codec", "expected"),
    [
        ("utf-16", "UTF-16LE"),
        ("utf-16-le", "UTF-16LE"),
        ("utf-16-be", "UTF-16BE"),
        ("utf-32", "UTF-32LE"),
    ],
)
def test_utf16_and_utf32_are_recognised(tmp_path: Path, codec: str, expected: str) -> None:
    src = tmp_path / "wide.jsonl"
    src.write_bytes((LINE * 3).encode(codec))
    params = _only_issue(_check(src, tmp_path), "not_utf8")
    assert params["encoding"] == expected
    # With a byte-order mark the first byte is the culprit; without one, the first NUL byte.
    first_bad = {"utf-16-le": (1, "0x00"), "utf-16-be": (0, "0x00")}.get(codec, (0, None))
    assert params["offset"] == first_bad[0]
    assert params["byte"] == (first_bad[1] or f"0x{(LINE * 3).encode(codec)[0]:02X}")


def test_bad_byte_far_into_the_file_gets_exact_position(tmp_path: Path) -> None:
    src = tmp_path / "big.jsonl"
    good = LINE.encode("utf-8") * 40_000  # > 1 MiB, so the bad byte is in a later read
    src.write_bytes(good + b'{"instruction": "\xff", "output": "x"}\n')
    params = _only_issue(_check(src, tmp_path), "not_utf8")
    assert (params["offset"], params["line"], params["byte"]) == (len(good) + 17, 40_001, "0xFF")


def test_multibyte_char_split_across_reads_is_fine(tmp_path: Path) -> None:
    src = tmp_path / "split.jsonl"
    pad = '{"instruction": "' + "x" * ((1 << 20) - 18) + '", "output": "中文"}\n'
    src.write_text(pad + LINE, encoding="utf-8")
    report = _check(src, tmp_path)
    assert (report.valid_rows, report.counts) == (2, {})


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (bytes(range(256)) * 4, "contains NUL bytes"),
        # mtime=0: the same bytes (and test id) in every test process (pytest-xdist checks).
        (gzip.compress(LINE.encode("utf-8"), mtime=0), "gzip"),
        (b"PK\x03\x04" + b"\x14\x00" * 50, "zip archive, e.g. .xlsx"),
    ],
)
def test_binary_files(tmp_path: Path, content: bytes, kind: str) -> None:
    src = tmp_path / "data.jsonl"
    src.write_bytes(content)
    report = _check(src, tmp_path)
    assert _only_issue(report, "binary_file") == {"kind": kind}
    assert "UTF-8" in report.issues[0].message


@pytest.mark.parametrize(
    ("name", "text", "container"),
    [
        ("bom.jsonl", LINE * 2, Container.jsonl),
        ("bom.json", json.dumps([ROW, ROW], ensure_ascii=False), Container.json),
        ("bom.csv", "instruction,output\nSay café,Café!\n", Container.csv),
    ],
)
def test_utf8_bom_is_accepted(tmp_path: Path, name: str, text: str, container: Container) -> None:
    src = tmp_path / name
    src.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    report = _check(src, tmp_path)
    assert report.container is container
    assert report.total_rows == report.valid_rows == 2 - (container is Container.csv)
    first = json.loads((tmp_path / "n.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][0]["content"] == "Say café"  # no BOM glued to the first key/cell


def test_unrecognised_text_is_a_file_level_error(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("just some notes\nnothing structured\n", encoding="utf-8")
    _only_issue(_check(src, tmp_path), "unknown_container")


def test_crlf_line_endings_and_a_raw_cr_inside_a_string(tmp_path: Path) -> None:
    src = tmp_path / "crlf.jsonl"
    rows = ['{"instruction": "a", "output": "b"}', '{"instruction": "c\rd", "output": "e"}']
    src.write_bytes(("\r\n".join(rows) + "\r\n\r\n").encode("utf-8"))
    report = _check(src, tmp_path)
    assert (report.total_rows, report.valid_rows, report.counts) == (2, 2, {})
    second = json.loads((tmp_path / "n.jsonl").read_text(encoding="utf-8").splitlines()[1])
    assert second["messages"][0]["content"] == "c\rd"
