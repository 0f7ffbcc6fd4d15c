"""Each schema (alpaca, sharegpt, openai) normalizes to the same `{"messages": [...]}` rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.datasets import Container, Schema, ValidationReport, validate_file

DATA = Path(__file__).resolve().parents[1] / "data"


def _run(src: Path, tmp_path: Path, **kwargs: Any) -> tuple[ValidationReport, list[Any], str]:
    normalized, dropped = tmp_path / "normalized.jsonl", tmp_path / "dropped.jsonl"
    report = validate_file(src, normalized, dropped, **kwargs)
    rows = [json.loads(line) for line in normalized.read_text(encoding="utf-8").splitlines()]
    return report, rows, dropped.read_text(encoding="utf-8")


def _write(tmp_path: Path, name: str, rows: list[Any]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return path


def test_alpaca_with_history_and_system_normalizes_exactly(tmp_path: Path) -> None:
    row = {
        "instruction": "And in French?",
        "input": "Good night",
        "output": "Bonne nuit",
        "system": "You are a translator.",
        "history": [["Translate: good morning", "Buenos días"], ["Now: hello", "Hola"]],
    }
    src = _write(tmp_path, "history.jsonl", [row])
    report = validate_file(src, tmp_path / "n.jsonl", tmp_path / "d.jsonl")
    assert report.valid_rows == 1 and report.counts == {}
    expected = (
        '{"messages":[{"role":"system","content":"You are a translator."},'
        '{"role":"user","content":"Translate: good morning"},'
        '{"role":"assistant","content":"Buenos días"},'
        '{"role":"user","content":"Now: hello"},'
        '{"role":"assistant","content":"Hola"},'
        '{"role":"user","content":"And in French?\\nGood night"},'
        '{"role":"assistant","content":"Bonne nuit"}]}\n'
    )
    assert (tmp_path / "n.jsonl").read_bytes() == expected.encode("utf-8")


def test_alpaca_empty_instruction_uses_input_like_llamafactory(tmp_path: Path) -> None:
    src = _write(tmp_path, "a.jsonl", [{"instruction": "", "input": "2+2?", "output": "4"}])
    _, rows, _ = _run(src, tmp_path)
    assert rows[0]["messages"][0] == {"role": "user", "content": "2+2?"}


def test_openai_jsonl_fixture_loads_cleanly(tmp_path: Path) -> None:
    report, rows, dropped = _run(DATA / "datasets_openai.jsonl", tmp_path)
    assert (report.container, report.format) == (Container.jsonl, Schema.openai)
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (4, 4, 0)
    assert report.counts == {} and dropped == ""
    assert [m["role"] for m in rows[2]["messages"]] == ["user", "assistant", "tool", "assistant"]
    # A pure tool call keeps the call itself as the assistant text.
    call = json.loads(rows[2]["messages"][1]["content"])
    assert call[0]["function"]["name"] == "get_weather"
    assert rows[1]["messages"][2] == {"role": "user", "content": "那“晚安”呢？"}
    assert rows[3] == {
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi!"},
        ]
    }


def test_sharegpt_json_fixture_loads_cleanly(tmp_path: Path) -> None:
    report, rows, dropped = _run(DATA / "datasets_sharegpt.json", tmp_path)
    assert (report.container, report.format) == (Container.json, Schema.sharegpt)
    assert (report.total_rows, report.valid_rows, report.invalid_rows) == (3, 3, 0)
    assert report.counts == {} and dropped == ""
    assert rows[0]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert [m["role"] for m in rows[0]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    # function_call → assistant, observation → tool
    assert [m["role"] for m in rows[1]["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert rows[1]["messages"][2]["content"] == "84"
    assert rows[2]["messages"][0] == {"role": "system", "content": "Answer in one word."}


def test_sharegpt_under_messages_key(tmp_path: Path) -> None:
    row = {"messages": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    report, rows, _ = _run(_write(tmp_path, "s.jsonl", [row]), tmp_path)
    assert report.format is Schema.sharegpt
    assert rows == [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    ]


def test_sharegpt_role_and_order_mistakes(tmp_path: Path) -> None:
    def conv(*turns: tuple[str, str]) -> dict[str, Any]:
        return {"conversations": [{"from": f, "value": v} for f, v in turns]}

    rows = [
        conv(("human", "Hi"), ("bot", "Hello")),
        conv(("human", "Hi"), ("gpt", "Hello"), ("observation", "42"), ("gpt", "ok")),
        conv(("human", "Hi"), ("system", "late"), ("gpt", "Hello")),
        conv(("human", "Hi"), ("gpt", "Hello"), ("human", "Bye")),
        conv(
            ("human", "q"),
            ("function_call", "{}"),
            ("observation", "1"),
            ("observation", "2"),
            ("gpt", "a"),
        ),
        {"conversations": [{"from": "human", "value": "Hi"}, {"value": "Hello"}]},
    ]
    report, _, dropped = _run(_write(tmp_path, "s.jsonl", rows), tmp_path)
    assert report.issues[0].code == "no_valid_rows"  # file-level issues come first
    row_issues = report.issues[1:]
    found = [(i.row, i.code, i.field, i.params.get("role")) for i in row_issues]
    assert found == [
        (1, "unknown_role", "conversations[1].from", "bot"),
        (2, "turn_order", "conversations[2]", "observation"),
        (3, "turn_order", "conversations[1]", "system"),
        (4, "last_turn_not_assistant", "conversations[2]", "human"),
        (5, "turn_order", "conversations[3]", "observation"),  # one observation per call
        (6, "missing_field", "conversations[1].from", None),
    ]
    assert row_issues[1].params["previous"] == "gpt"
    assert "human, gpt, system, function_call, observation" in row_issues[0].message
    assert len(dropped.splitlines()) == 6


def test_schema_override_reports_mixed_rows(tmp_path: Path) -> None:
    src = _write(tmp_path, "a.jsonl", [{"instruction": "a", "output": "b"}])
    report, rows, _ = _run(src, tmp_path, schema=Schema.openai)
    assert rows == [] and report.format is Schema.openai
    assert [(i.row, i.code, i.params) for i in report.issues] == [
        (None, "no_valid_rows", {"total_rows": 1}),
        (1, "mixed_format", {"found": "alpaca", "format": "openai"}),
    ]
