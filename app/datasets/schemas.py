"""Row schemas: recognise alpaca / sharegpt / openai rows and turn each into normalized turns.

The alpaca and sharegpt rules follow LLaMA-Factory's converters (defaults of its
`dataset_info.json`), so files that train there load here unchanged:
* alpaca: history pairs first, then user = instruction + "\\n" + input (only the non-empty
  ones), then assistant = output; `system` becomes a leading system turn.
* sharegpt: `from`/`value` with human, gpt, system, function_call, observation; a system turn
  is only allowed first, otherwise the row's `system` field is used.
* openai: `role`/`content`; an assistant tool call without text keeps the call (JSON) as its
  content, like sharegpt's function_call turns. Other keys (`weight`, `name`, ...) are ignored.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import chain, islice
from typing import Any

from app.datasets.models import Problem, RawRow, Schema
from app.datasets.turns import Turn, check_turns, is_blank, json_type, wrong_type

SHAREGPT_ROLES: dict[str, str] = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
}
OPENAI_ROLES = ("system", "user", "assistant", "tool")
# What each schema needs, for unknown_format messages.
EXPECTED_KEYS: dict[Schema | None, str] = {
    Schema.alpaca: "instruction, output",
    Schema.sharegpt: "conversations",
    Schema.openai: "messages",
    None: "instruction + output (alpaca), conversations (sharegpt) or messages (openai)",
}
Converted = tuple[list[Turn], list[Problem]]


def classify(row: dict[str, Any]) -> Schema | None:
    """Which schema a row is written in, judged by its keys only (None: none of ours)."""
    if "conversations" in row:
        return Schema.sharegpt
    if "messages" in row:
        messages = row["messages"]
        first = messages[0] if isinstance(messages, list) and messages else None
        if isinstance(first, dict) and "from" in first and "role" not in first:
            return Schema.sharegpt  # LLaMA-Factory lets sharegpt data use a `messages` key
        return Schema.openai
    if "instruction" in row or "output" in row:
        return Schema.alpaca
    return None


def detect_schema(
    rows: Iterator[RawRow], lookahead: int = 100
) -> tuple[Schema | None, Iterator[RawRow]]:
    """Majority schema of the first `lookahead` object rows (ties: the first seen), and the
    rows again, unconsumed. None if no row is recognisable."""
    head = list(islice(rows, lookahead))
    votes = Counter(classify(r.value) for r in head if isinstance(r.value, dict))
    votes.pop(None, None)
    schema = votes.most_common(1)[0][0] if votes else None
    return schema, chain(head, rows)


def _text(row: dict[str, Any], key: str, required: bool, problems: list[Problem]) -> str | None:
    """A string field: missing/None → "" when optional; wrong type → problem and None."""
    value = row.get(key)
    if type(value) is str:
        return value
    if value is None and not required:
        return ""
    if key not in row:
        problems.append(Problem("missing_field", key, {"format": "alpaca"}))
    else:
        problems.append(wrong_type(key, "string", value))
    return None


def _history(value: Any, problems: list[Problem]) -> list[Turn]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(wrong_type("history", "array", value))
        return []
    turns: list[Turn] = []
    for i, pair in enumerate(value):
        path = f"history[{i}]"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            problems.append(wrong_type(path, "array of 2 strings", pair))
            continue
        for j, (role, label) in enumerate((("user", "question"), ("assistant", "answer"))):
            text = pair[j]
            if not isinstance(text, str):
                problems.append(wrong_type(f"{path}[{j}]", "string", text))
            elif is_blank(text):
                problems.append(Problem("empty_field", f"{path}[{j}]"))
            else:
                turns.append((role, text, False, f"{path}[{j}]", label))
    return turns


def convert_alpaca(row: dict[str, Any]) -> Converted:
    problems: list[Problem] = []
    instruction = _text(row, "instruction", True, problems)
    query = _text(row, "input", False, problems)
    output = _text(row, "output", True, problems)
    system = _text(row, "system", False, problems)
    history = _history(row.get("history"), problems)
    # An empty instruction is fine when the input carries the prompt (LLaMA-Factory allows it).
    if instruction is not None and query is not None and is_blank(instruction) and is_blank(query):
        problems.append(Problem("empty_field", "instruction"))
    if output is not None and is_blank(output):
        problems.append(Problem("empty_field", "output"))
    if problems or instruction is None or query is None or output is None or system is None:
        return [], problems
    # LLaMA-Factory joins the non-empty parts of [instruction, input] with a newline.
    prompt = f"{instruction}\n{query}" if instruction and query else instruction or query
    turns: list[Turn] = []
    if not is_blank(system):
        turns.append(("system", system, False, "system", "system"))
    turns += history
    turns.append(("user", prompt, False, "instruction", "user"))
    turns.append(("assistant", output, False, "output", "assistant"))
    return turns, problems


def _turn_list(row: dict[str, Any], key: str, problems: list[Problem]) -> list[Any]:
    value = row.get(key)
    if not isinstance(value, list):
        problems.append(wrong_type(key, "array", value))
        return []
    if not value:
        problems.append(Problem("empty_field", key))
    return value


def _turn_text(
    message: dict[str, Any], key: str, path: str, fmt: str, problems: list[Problem]
) -> str | None:
    value = message.get(key)
    if type(value) is str and not is_blank(value):
        return value
    if key not in message:
        problems.append(Problem("missing_field", f"{path}.{key}", {"format": fmt}))
    elif not isinstance(value, str):
        problems.append(wrong_type(f"{path}.{key}", "string", value))
    else:
        problems.append(Problem("empty_field", f"{path}.{key}"))
    return None


def _role(
    message: dict[str, Any],
    key: str,
    path: str,
    fmt: str,
    allowed: tuple[str, ...],
    problems: list[Problem],
) -> str | None:
    value = message.get(key)
    if value in allowed:
        return str(value)
    if key not in message:
        problems.append(Problem("missing_field", f"{path}.{key}", {"format": fmt}))
    elif not isinstance(value, str):
        problems.append(wrong_type(f"{path}.{key}", "string", value))
    else:
        params = {"role": value, "format": fmt, "allowed": ", ".join(allowed)}
        problems.append(Problem("unknown_role", f"{path}.{key}", params))
    return None


def convert_sharegpt(row: dict[str, Any]) -> Converted:
    problems: list[Problem] = []
    key = "conversations" if "conversations" in row else "messages"
    turns: list[Turn] = []
    for i, message in enumerate(_turn_list(row, key, problems)):
        path = f"{key}[{i}]"
        if not isinstance(message, dict):
            problems.append(wrong_type(path, "object", message))
            continue
        label = _role(message, "from", path, "sharegpt", tuple(SHAREGPT_ROLES), problems)
        text = _turn_text(message, "value", path, "sharegpt", problems)
        if label is not None and text is not None:
            turns.append((SHAREGPT_ROLES[label], text, label == "function_call", path, label))
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        problems.append(wrong_type("system", "string", system))
    if problems:
        return [], problems
    # A leading system turn wins over the `system` field, as in LLaMA-Factory.
    if system and not is_blank(system) and not (turns and turns[0][0] == "system"):
        turns.insert(0, ("system", system, False, "system", "system"))
    return turns, check_turns(turns, tool_chain=False)


def convert_openai(row: dict[str, Any]) -> Converted:
    problems: list[Problem] = []
    turns: list[Turn] = []
    for i, message in enumerate(_turn_list(row, "messages", problems)):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(wrong_type(path, "object", message))
            continue
        role = _role(message, "role", path, "openai", OPENAI_ROLES, problems)
        call = message.get("tool_calls") or message.get("function_call")
        is_call = role == "assistant" and bool(call)
        if is_call and not message.get("content"):
            # A pure tool call has no text; keep the call itself (as JSON) as the turn's text,
            # which is how sharegpt's function_call turns carry it.
            text: str | None = json.dumps(call, ensure_ascii=False)
        else:
            text = _turn_text(message, "content", path, "openai", problems)
        if role is not None and text is not None:
            turns.append((role, text, is_call, path, role))
    if problems:
        return [], problems
    return turns, check_turns(turns, tool_chain=True)


CONVERTERS: dict[Schema, Callable[[dict[str, Any]], Converted]] = {
    Schema.alpaca: convert_alpaca,
    Schema.sharegpt: convert_sharegpt,
    Schema.openai: convert_openai,
}

__all__ = ["CONVERTERS", "EXPECTED_KEYS", "classify", "detect_schema", "json_type"]
