"""Hypothesis against the dataset validator the upload runs (`validate_file`, called by
app.services.datasets for every upload and revalidation): arbitrary bytes and structured but
wrong JSON, JSON Lines and CSV, in the alpaca, sharegpt and openai shapes, with and without the
user's container / format / column-map choices.

Whatever the file holds, validation must end in a report, never an exception, and the report
may only speak in the codes the validator defines (app.datasets.messages): each with its
severity, rows numbered from 1, file-level codes without a row, the row counts adding up, and
every issue readable in both languages. What it keeps is valid `{"messages": [...]}` JSON
Lines; what it drops is listed with its errors, one JSON line a row.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from app.datasets import (
    MESSAGES_EN,
    SEVERITY,
    Container,
    Schema,
    ValidationReport,
    csv_columns,
    read_preview,
    validate_file,
)
from app.datasets.csvfile import FIELDS
from app.datasets.messages import FILE_LEVEL_CODES
from app.i18n import Translator
from app.services.issue_text import issues_public

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NAMES = st.sampled_from(["data.json", "data.jsonl", "data.csv", "data.tsv", "data.txt", "data"])
# The user's choices: mostly left to detection, as most uploads are.
CONTAINERS = st.sampled_from([None, None, None, *Container])
SCHEMAS = st.sampled_from([None, None, None, *Schema])
COLUMN_MAPS = (
    st.none()
    | st.none()
    | st.dictionaries(
        st.sampled_from(FIELDS), st.sampled_from(["prompt", "answer", "instruction", "text", ""])
    )
)

# The keys and roles the three formats use, so generated rows get past the first checks.
KEYS = st.sampled_from(
    [
        *("instruction", "input", "output", "system", "history"),
        *("conversations", "from", "value", "messages", "role", "content"),
        *("tool_calls", "function_call", "name", "prompt", "completion", "weight"),
    ]
)
ROLES = st.sampled_from(
    ["system", "user", "assistant", "tool", "human", "gpt", "function_call", "observation", "bot"]
)
# Any character, and more often than chance the ones that trip text handling: half of a
# surrogate pair (`json.dumps` writes it as a `\ud800` escape, valid JSON syntax but half a
# character), NUL, line and paragraph separators, a byte order mark, a whole emoji.
ODD = st.sampled_from(["\ud800", "\udfff", "\x00", "\r", "\u2028", "\x85", "\ufeff", "\U0001f600"])
TEXT = st.one_of(
    st.text(max_size=20),
    st.text(min_size=1, max_size=20),
    st.lists(st.text(max_size=5) | ODD, min_size=1, max_size=4).map("".join),
    ROLES,
)
LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | TEXT, inner, max_size=4),
    max_leaves=12,
)
# Rows of one format, nearly right, so that most files get past detection to the turn rules;
# then anything: other keys, wrong types, not objects at all.
OPENAI_TURN = st.fixed_dictionaries(
    {"role": ROLES, "content": TEXT}, optional={"tool_calls": VALUES, "name": TEXT}
)
SHAREGPT_TURN = st.fixed_dictionaries({"from": ROLES, "value": TEXT})
ANY_TURN = st.fixed_dictionaries(
    {}, optional=dict.fromkeys(("role", "from", "content", "value"), ROLES | TEXT | VALUES)
)
ALPACA = st.fixed_dictionaries(
    {"instruction": TEXT, "output": TEXT},
    optional={"input": TEXT, "system": TEXT, "history": st.lists(st.tuples(TEXT, TEXT))},
)
SHAREGPT = st.fixed_dictionaries(
    {"conversations": st.lists(SHAREGPT_TURN | ANY_TURN, max_size=5)}, optional={"system": TEXT}
)
OPENAI = st.fixed_dictionaries({"messages": st.lists(OPENAI_TURN | ANY_TURN, max_size=5)})
ANY_ROW = st.one_of(
    st.fixed_dictionaries(
        {}, optional=dict.fromkeys(("instruction", "input", "output", "system"), TEXT | VALUES)
    ),
    st.dictionaries(KEYS, VALUES, max_size=5),
    VALUES,
)
ROWS = st.one_of(
    st.lists(ALPACA, max_size=8),
    st.lists(SHAREGPT, max_size=8),
    st.lists(OPENAI, max_size=8),
    st.lists(ALPACA | SHAREGPT | OPENAI | ANY_ROW, max_size=8),
)


def _jsonl(rows: list[Any], ensure_ascii: bool) -> bytes:
    lines = [json.dumps(r, ensure_ascii=ensure_ascii) for r in rows]
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _json_array(rows: list[Any], ensure_ascii: bool) -> bytes:
    return json.dumps(rows, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


def _csv(rows: list[Any], ensure_ascii: bool) -> bytes:
    """A header of every key the rows use; list and object cells as JSON text."""
    objects = [r for r in rows if isinstance(r, dict)]
    columns = sorted({str(k) for r in objects for k in r})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in objects:
        cells = [row.get(c, "") for c in columns]
        writer.writerow(
            c if isinstance(c, str) else json.dumps(c, ensure_ascii=ensure_ascii) for c in cells
        )
    return out.getvalue().encode("utf-8", "surrogatepass")


WRITERS = {"jsonl": _jsonl, "json": _json_array, "csv": _csv}


@st.composite
def structured_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """Rows in a container, sometimes cut short or with a few bytes overwritten."""
    kind = draw(st.sampled_from(sorted(WRITERS)))
    data = WRITERS[kind](draw(ROWS), ensure_ascii=draw(st.integers(0, 3)) > 0)
    if data and draw(st.integers(0, 3)) == 0:
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=4)) + data[cut + draw(st.integers(0, 4)) :]
    return f"data.{kind}", data


NO_CHOICE: dict[str, Any] = {"container": None, "schema": None, "column_map": None}


def check(
    data: bytes,
    filename: str,
    container: Container | None = None,
    schema: Schema | None = None,
    column_map: dict[str, str] | None = None,
) -> ValidationReport:
    """Validate `data` as the upload does and check everything the report promises."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src, normalized, dropped = folder / filename, folder / "n.jsonl", folder / "d.jsonl"
        src.write_bytes(data)
        report = validate_file(
            src,
            normalized,
            dropped,
            filename=filename,
            container=container,
            schema=schema,
            column_map=column_map,
        )
        # Lines end in "\n" only: str.splitlines() would also cut at U+2028 inside a string.
        kept = normalized.read_text(encoding="utf-8").split("\n")[:-1]
        rejected = dropped.read_text(encoding="utf-8").split("\n")[:-1]
        assert read_preview(normalized, 0, len(kept)) == [json.loads(line) for line in kept]
        if report.container is Container.csv:
            csv_columns(src, filename)  # the column-mapping step reads the header too

    for issue in report.issues:
        assert issue.code in MESSAGES_EN, issue
        assert issue.severity == SEVERITY[issue.code], issue
        assert issue.row is None or issue.row >= 1, issue
        if issue.code in FILE_LEVEL_CODES:
            assert issue.row is None, issue
    assert set(report.counts) <= set(MESSAGES_EN), report.counts
    assert sum(report.counts.values()) >= len(report.issues)
    assert report.total_rows == report.valid_rows + report.invalid_rows
    assert not report.ok or report.valid_rows > 0

    assert len(kept) == report.valid_rows
    for line in kept:
        messages = json.loads(line)["messages"]
        assert messages and all(
            m["role"] in ("system", "user", "assistant", "tool") and isinstance(m["content"], str)
            for m in messages
        ), line
    assert len(rejected) == report.invalid_rows
    for line in rejected:
        record = json.loads(line)
        assert record["row"] >= 1 and record["errors"], record
        assert all(e["code"] in MESSAGES_EN for e in record["errors"]), record

    # `--hypothesis-show-statistics` shows how far the examples got.
    event(f"container {report.container}, format {report.format}")
    event("rows kept" if report.valid_rows else "no row kept")
    for code in report.counts:
        event(f"issue {code}")

    # What the service stores (report.json) and what the API and pages show.
    json.loads(report.model_dump_json())
    for language in ("en", "zh-CN"):
        for issue in issues_public(Translator(language), report):
            json.dumps(issue, ensure_ascii=False).encode()
    return report


@FUZZ
@given(data=st.binary(max_size=2048), filename=NAMES, container=CONTAINERS, schema=SCHEMAS)
# Found by this test: a carriage return in the first line of a file without a known extension
# made the CSV sniffing raise csv.Error.
@example(data=b"a,b\rc", filename="data", container=None, schema=None)
def test_arbitrary_bytes_give_a_report(
    data: bytes, filename: str, container: Container | None, schema: Schema | None
) -> None:
    check(data, filename, container, schema)


@FUZZ
@given(file=structured_files(), container=CONTAINERS, schema=SCHEMAS, column_map=COLUMN_MAPS)
# Found by this test: half a surrogate pair (a `\ud800` escape) in a kept row, or in a dropped
# one's raw JSON, failed to encode as UTF-8 (UnicodeEncodeError, a 500 on upload).
@example(file=("data.jsonl", b'{"instruction": "Hi \\ud800", "output": "Yes"}'), **NO_CHOICE)
@example(file=("data.json", b'[{"instruction": "Hi \\ud800"}]'), **NO_CHOICE)
def test_wrong_rows_give_a_report(
    file: tuple[str, bytes],
    container: Container | None,
    schema: Schema | None,
    column_map: dict[str, str] | None,
) -> None:
    filename, data = file
    check(data, filename, container, schema, column_map)
