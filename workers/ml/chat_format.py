"""Conversations to training tokens, with the loss on assistant turns only, and a preview of them.

The conversation is rendered once with the chat template and tokenized as a whole, exactly as
tokenizer.apply_chat_template(..., tokenize=True) would, so training sees the model's canonical
tokens. Each assistant turn's character span is found by rendering growing prefixes of the
conversation: the text added by assistant message N (after the generation prompt) is what the
model must produce, end-of-turn marker included. Tokens starting inside those spans carry loss.
render_preview() is built from the same tokens, so the UI shows exactly what training sees.
"""

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workers.ml.errors import ChatFormatError

IGNORE_INDEX = -100  # label value that PyTorch's cross-entropy skips
TEMPLATES_FILE = Path(__file__).with_name("chat_templates.yaml")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # the token id where the model learns it, IGNORE_INDEX elsewhere
    attention_mask: list[int]
    template: str  # name of the template used: "tokenizer", a named one, or "custom"
    truncated: bool


@dataclass(frozen=True)
class Segment:
    text: str
    carries_loss: bool
    token_ids: tuple[int, ...]


@functools.cache
def named_templates() -> dict[str, str]:
    """Template name -> Jinja source, from chat_templates.yaml."""
    data = yaml.safe_load(TEMPLATES_FILE.read_text(encoding="utf-8"))
    return {name: spec["jinja"] for name, spec in data["templates"].items()}


def _knows_token(tokenizer: Any, token: str) -> bool:
    token_id = tokenizer.convert_tokens_to_ids(token)
    return token_id is not None and token_id != tokenizer.unk_token_id


def resolve_template(tokenizer: Any, template: str | None = None) -> tuple[str, str | None]:
    """(name, jinja) to render with; jinja None means the tokenizer's own template.

    `template` may be None (the tokenizer's own, else a guess from its special tokens), "tokenizer",
    a name from chat_templates.yaml, or raw Jinja source (then named "custom").
    """
    own = tokenizer.chat_template
    if template is None:
        if own:
            return "tokenizer", None
        # No template of its own (a base model): pick the turn format its vocabulary knows, so
        # turn markers are single special tokens rather than strings of ordinary ones.
        if _knows_token(tokenizer, "<start_of_turn>"):
            return "gemma", named_templates()["gemma"]
        if _knows_token(tokenizer, "<|im_start|>"):
            return "chatml", named_templates()["chatml"]
        return "alpaca", named_templates()["alpaca"]
    if template == "tokenizer":
        if not own:
            raise ChatFormatError("this tokenizer has no chat template; choose a named template")
        return "tokenizer", None
    if template in named_templates():
        return template, named_templates()[template]
    if "{%" in template or "{{" in template:
        return "custom", template
    names = ", ".join(["tokenizer", *named_templates()])
    raise ChatFormatError(f"unknown chat template {template!r} (choose one of: {names})")


def _check_messages(messages: list[dict[str, str]]) -> None:
    if not messages:
        raise ChatFormatError("the conversation is empty")
    for i, message in enumerate(messages):
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise ChatFormatError(
                f"message {i} needs a role ({', '.join(ROLES)}) and a text content"
            )
    if not any(m["role"] == "assistant" for m in messages):
        raise ChatFormatError("the conversation has no assistant turn to learn from")
    first = next(m["role"] for m in messages if m["role"] != "system")
    if first != "user":
        # The prompt before an opening assistant turn would be an empty conversation, which
        # templates render inconsistently (some add a default system prompt only when non-empty).
        raise ChatFormatError("the conversation must start with a user message (after any system)")


def _render(tokenizer: Any, messages: list[dict[str, str]], jinja: str | None, gen: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, chat_template=jinja, tokenize=False, add_generation_prompt=gen
        )
    except Exception as exc:  # jinja raises its own types, and templates call raise_exception
        raise ChatFormatError(f"the chat template failed on this conversation: {exc}") from exc
    return str(text)


def assistant_spans(
    tokenizer: Any, messages: list[dict[str, str]], jinja: str | None
) -> tuple[str, list[tuple[int, int]]]:
    """Full rendered text and the [start, end) character spans of each assistant turn."""
    full = _render(tokenizer, messages, jinja, gen=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], jinja, gen=True)
        after = _render(tokenizer, messages[: i + 1], jinja, gen=False)
        if not (full.startswith(after) and after.startswith(before)):
            raise ChatFormatError(
                "the chat template renders earlier turns differently as the conversation grows, "
                "so assistant turns cannot be located; choose a named template"
            )
        if len(after) > len(before):
            spans.append((len(before), len(after)))
    return full, spans


def _tokenize_with_spans(
    tokenizer: Any, text: str, spans: list[tuple[int, int]]
) -> tuple[list[int], list[bool]]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, KeyError):
        offsets = None
    if offsets is None:
        # Slow (Python) tokenizers give no offsets: tokenize the pieces between span edges
        # separately. Exact for templates whose turns end in special tokens.
        return _tokenize_pieces(tokenizer, text, spans)
    ids = list(enc["input_ids"])
    flags = [any(s <= start < e for s, e in spans) for start, _ in offsets]
    return ids, flags


def _tokenize_pieces(
    tokenizer: Any, text: str, spans: list[tuple[int, int]]
) -> tuple[list[int], list[bool]]:
    ids: list[int] = []
    flags: list[bool] = []
    cursor = 0
    for start, end in [*spans, (len(text), len(text))]:
        for piece, loss in ((text[cursor:start], False), (text[start:end], True)):
            piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
            ids.extend(piece_ids)
            flags.extend([loss] * len(piece_ids))
        cursor = end
    return ids, flags


def tokenize_conversation(
    tokenizer: Any,
    messages: list[dict[str, str]],
    *,
    template: str | None = None,
    max_length: int | None = None,
) -> TokenizedExample:
    """Token ids and labels for one conversation; loss on every assistant turn, nothing else.

    Truncation (max_length) cuts from the right, like inference would never see the cut part.
    """
    _check_messages(messages)
    name, jinja = resolve_template(tokenizer, template)
    text, spans = assistant_spans(tokenizer, messages, jinja)
    ids, flags = _tokenize_with_spans(tokenizer, text, spans)
    truncated = max_length is not None and len(ids) > max_length
    if max_length is not None:
        ids, flags = ids[:max_length], flags[:max_length]
    labels = [tok if loss else IGNORE_INDEX for tok, loss in zip(ids, flags, strict=True)]
    return TokenizedExample(
        input_ids=ids,
        labels=labels,
        attention_mask=[1] * len(ids),
        template=name,
        truncated=truncated,
    )


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))


def segments_from_example(tokenizer: Any, example: TokenizedExample) -> list[Segment]:
    """Runs of tokens with the same loss flag, each decoded to the text it stands for."""
    runs: list[tuple[int, int, bool]] = []
    for i, label in enumerate(example.labels):
        loss = label != IGNORE_INDEX
        if runs and runs[-1][2] == loss:
            runs[-1] = (runs[-1][0], i + 1, loss)
        else:
            runs.append((i, i + 1, loss))
    ids = example.input_ids
    segments: list[Segment] = []
    for start, end, loss in runs:
        # Decode the growing prefix and keep the new tail: decoding a run on its own can drop
        # a leading space (SentencePiece) that the model does see.
        head, whole = _decode(tokenizer, ids[:start]), _decode(tokenizer, ids[:end])
        piece = whole[len(head) :] if whole.startswith(head) else _decode(tokenizer, ids[start:end])
        segments.append(Segment(text=piece, carries_loss=loss, token_ids=tuple(ids[start:end])))
    return segments


def render_preview(
    tokenizer: Any,
    messages: list[dict[str, str]],
    template: str | None = None,
    max_length: int | None = None,
) -> list[Segment]:
    """What training sees for a conversation, as text segments marked with or without loss."""
    example = tokenize_conversation(tokenizer, messages, template=template, max_length=max_length)
    return segments_from_example(tokenizer, example)
