"""Conversation-shape rules shared by the sharegpt and openai schemas.

A turn is `(role, content, is_call, path, label)`: the normalized role, its text, whether it is
an assistant tool/function call, where it sits in the row (for messages), and the role as the
user wrote it (`gpt`, `human`, ...) so messages quote their own words back to them.
"""

from __future__ import annotations

from typing import Any

from app.datasets.models import Problem

Turn = tuple[str, str, bool, str, str]


def json_type(value: Any) -> str:
    """JSON name of a parsed value's type, for `wrong_type` / `not_an_object` messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def wrong_type(field: str, expected: str, value: Any) -> Problem:
    return Problem("wrong_type", field, {"expected": expected, "found": json_type(value)})


def is_blank(text: str) -> bool:
    # isspace() is False for "", and neither call copies the string (unlike strip()).
    return not text or text.isspace()


def _allowed(role: str, prev: Turn | None, tool_chain: bool) -> bool:
    prev_role = prev[0] if prev else None
    if role == "system":
        return prev is None
    if role == "user":
        return prev_role in (None, "system", "assistant")
    if role == "assistant":
        return prev_role in ("user", "tool")
    if role == "tool":  # a tool result answers the assistant's call just before it
        return (prev_role == "assistant" and prev is not None and prev[2]) or (
            tool_chain and prev_role == "tool"
        )
    return False


def check_turns(turns: list[Turn], tool_chain: bool) -> list[Problem]:
    """Optional system first, then user/assistant alternating, tool only after a call, and an
    assistant turn last. `tool_chain` allows several tool results in a row (OpenAI parallel
    calls); LLaMA-Factory's sharegpt pairs every observation with one function_call.
    Only the first ordering problem is reported: later ones usually follow from it."""
    problems: list[Problem] = []
    prev: Turn | None = None
    for turn in turns:
        if not _allowed(turn[0], prev, tool_chain):
            previous = prev[4] if prev else "start"
            params = {"role": turn[4], "previous": previous}
            problems.append(Problem("turn_order", turn[3], params))
            break
        prev = turn
    if turns and turns[-1][0] != "assistant":
        last = turns[-1]
        problems.append(Problem("last_turn_not_assistant", last[3], {"role": last[4]}))
    return problems


def unpaired_surrogate(turns: list[Turn]) -> list[Problem]:
    """The first turn holding half of a UTF-16 pair: JSON's `\\ud800` escape without its
    partner parses, but is no character, so no UTF-8 file (or tokenizer) can take it."""
    for turn in turns:
        try:
            turn[1].encode("utf-8")
        except UnicodeEncodeError as exc:
            escape = f"\\u{ord(turn[1][exc.start]):04x}"
            return [Problem("invalid_text", turn[3], {"escape": escape})]
    return []
