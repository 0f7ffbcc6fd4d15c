"""Every dataset issue code has a catalog entry in both languages, and a real issue renders from it.

The validator's English templates (`MESSAGES_EN`) are copied into the catalogs under
`catalog_key(code)`; zh-CN translates them with the same placeholders. Small bad files are run
through `validate_file` so each code is rendered from an issue the validator really produces.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from app.datasets import MESSAGES_EN, Issue, catalog_key, validate_file
from app.i18n import Translator, load_catalog, placeholders
from app.services.issue_text import issue_message

UNREPLACED = re.compile(r"\{[^{}]*\}")
CJK = re.compile(r"[\u4e00-\u9fff]")


def _jsonl(*rows: object) -> str:
    """One line per row: a str is written as is (bad JSON, blank line), anything else as JSON."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _chat(*turns: tuple[str, str]) -> dict[str, object]:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


# File name → contents. Each file holds a few typical mistakes; together they produce every code.
BAD_FILES: dict[str, str | bytes] = {
    "alpaca.jsonl": _jsonl(
        {"instruction": "Say hi", "output": "Hi"},
        {"instruction": "Say bye"},  # missing_field: output
        {"instruction": "", "output": "Bye"},  # empty_field: instruction
        {"instruction": ["Say", "hi"], "output": "Hi"},  # wrong_type: instruction
        "",  # blank_row
        {"instruction": "Say hi", "output": "Hi"},  # duplicate_row
        '{"instruction": "Hi", "output": "Hello"',  # invalid_json
        '["Hi", "Hello"]',  # not_an_object
        _chat(("user", "Hi"), ("assistant", "Hello")),  # mixed_format
        {"prompt": "Hi", "completion": "Hello"},  # unknown_format
        {"instruction": "Hi \ud83d", "output": "Hello"},  # invalid_text: a lone `\ud83d` escape
    ),
    "chat.jsonl": _jsonl(
        _chat(("user", "Hi"), ("assistant", "Hello")),
        _chat(("user", "Hi"), ("bot", "Hello")),  # unknown_role: messages[1].role
        _chat(("user", "Hi"), ("user", "Anyone?"), ("assistant", "Yes")),  # turn_order
        _chat(("user", "Hi"), ("assistant", "Hello"), ("user", "Bye")),  # last_turn_not_assistant
    ),
    "sharegpt.jsonl": _jsonl(
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "Yo"}]},
    ),
    "all_bad.jsonl": _jsonl({"instruction": "Only a question"}),  # no_valid_rows
    "empty.jsonl": "",  # empty_file
    "latin1.jsonl": '{"instruction": "Café?", "output": "Oui"}\n'.encode("latin-1"),  # not_utf8
    "sheet.xlsx": b"PK\x03\x04 not really a spreadsheet",  # binary_file
    "notes.txt": "some notes\nwithout any structure\n",  # unknown_container
    "no_output.csv": "instruction,input\nSay hi,politely\n",  # missing_column: output
    "extra.csv": "instruction,output\nSay hi,Hi,and more\nSay bye,Bye\n",  # column_count
    "huge_cell.csv": "instruction,output\nHi,Hello\nHi," + "x" * 50 + "\n",  # invalid_csv
}


def _validate(src: Path, out: Path) -> list[Issue]:
    if src.name != "huge_cell.csv":
        return validate_file(src, out / f"{src.name}.n", out / f"{src.name}.d").issues
    # A cell over the csv module's size cap makes the reader fail; lower the (process-wide)
    # cap just for this file, as tests/unit/test_datasets_csv.py does.
    old_limit = csv.field_size_limit()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("app.datasets.csvfile._FIELD_LIMIT", 20)
        csv.field_size_limit(20)
        try:
            return validate_file(src, out / f"{src.name}.n", out / f"{src.name}.d").issues
        finally:
            csv.field_size_limit(old_limit)


@pytest.fixture(scope="module")
def issues_by_code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issue]:
    """The first issue of each code found in the bad files."""
    tmp = tmp_path_factory.mktemp("bad_datasets")
    found: dict[str, Issue] = {}
    for name, content in BAD_FILES.items():
        src = tmp / name
        if isinstance(content, bytes):
            src.write_bytes(content)
        else:
            src.write_text(content, encoding="utf-8")
        for issue in _validate(src, tmp):
            found.setdefault(issue.code, issue)
    return found


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_every_code_is_in_the_catalog_with_the_validator_placeholders(language: str) -> None:
    catalog = load_catalog(language)
    missing = sorted(code for code in MESSAGES_EN if catalog_key(code) not in catalog)
    assert not missing, f"{language}: issue codes missing from the catalog: {missing}"
    for code, template in MESSAGES_EN.items():
        text = catalog[catalog_key(code)]
        assert text.strip(), code
        assert placeholders(text) == placeholders(template), code


def test_english_catalog_is_the_validator_text() -> None:
    en = load_catalog("en")
    assert {code: en[catalog_key(code)] for code in MESSAGES_EN} == MESSAGES_EN


def test_bad_files_produce_every_code(issues_by_code: dict[str, Issue]) -> None:
    assert set(issues_by_code) == set(MESSAGES_EN), set(MESSAGES_EN) ^ set(issues_by_code)


@pytest.mark.parametrize("code", sorted(MESSAGES_EN))
def test_real_issue_renders_in_chinese(code: str, issues_by_code: dict[str, Issue]) -> None:
    issue = issues_by_code[code]
    text = issue_message(Translator("zh-CN"), issue)

    # From the zh-CN catalog, not the English fallback, with every placeholder filled in.
    zh_template = load_catalog("zh-CN")[catalog_key(code)]
    assert text == zh_template.format(**issue.params, row=issue.row, field=issue.field)
    assert text != issue.message
    assert CJK.search(text), text
    assert not UNREPLACED.search(text), text
    if issue.field is not None:
        assert issue.field in text, text  # the reader can find the field in their file


@pytest.mark.parametrize("code", sorted(MESSAGES_EN))
def test_real_issue_renders_in_english_as_the_validator_says(
    code: str, issues_by_code: dict[str, Issue]
) -> None:
    issue = issues_by_code[code]
    assert issue_message(Translator("en"), issue) == issue.message


def test_typical_row_mistakes_name_their_field(issues_by_code: dict[str, Issue]) -> None:
    zh = Translator("zh-CN")
    expected = {
        "missing_field": "output",
        "empty_field": "instruction",
        "wrong_type": "instruction",
        "unknown_role": "messages[1].role",
        "missing_column": "output",
    }
    for code, field in expected.items():
        issue = issues_by_code[code]
        assert issue.field == field, (code, issue.field)
        assert f"“{field}”" in issue_message(zh, issue), code
