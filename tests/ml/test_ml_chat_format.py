"""Chat formatting: loss only on assistant turns, and a preview identical to the training tokens."""

import copy
from typing import Any

import pytest

from tests.helpers.tiny_model import trained_tokenizer
from workers.ml import chat_format as cf
from workers.ml.errors import ChatFormatError

CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "北京是哪个国家的首都？"},
    {"role": "assistant", "content": "中国的首都。"},
]
ASSISTANT = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
PROMPTS = [m["content"] for m in CONVERSATION if m["role"] != "assistant"]


def _loss_texts(tokenizer: Any, example: cf.TokenizedExample) -> list[str]:
    segments = cf.segments_from_example(tokenizer, example)
    return [s.text for s in segments if s.carries_loss]


def test_labels_only_on_assistant_turns(tiny_tokenizer: Any) -> None:
    example = cf.tokenize_conversation(tiny_tokenizer, CONVERSATION)
    assert example.template == "tokenizer"
    assert len(example.input_ids) == len(example.labels) == len(example.attention_mask)
    # Each assistant turn is learned whole, with its end-of-turn marker; nothing else is.
    assert _loss_texts(tiny_tokenizer, example) == [f"{a}<|im_end|>\n" for a in ASSISTANT]
    for label, token in zip(example.labels, example.input_ids, strict=True):
        assert label in (cf.IGNORE_INDEX, token)
    pairs = zip(example.input_ids, example.labels, strict=True)
    prompt_ids = [t for t, lab in pairs if lab == cf.IGNORE_INDEX]
    prompt_text = tiny_tokenizer.decode(prompt_ids)
    assert all(p in prompt_text for p in PROMPTS)
    assert not any(a in prompt_text for a in ASSISTANT)


def test_tokens_equal_apply_chat_template(tiny_tokenizer: Any) -> None:
    example = cf.tokenize_conversation(tiny_tokenizer, CONVERSATION)
    reference = tiny_tokenizer.apply_chat_template(CONVERSATION, tokenize=True)
    reference = reference["input_ids"] if hasattr(reference, "keys") else reference
    assert example.input_ids == list(reference)


def test_preview_equals_tokenization(tiny_tokenizer: Any) -> None:
    example = cf.tokenize_conversation(tiny_tokenizer, CONVERSATION)
    segments = cf.render_preview(tiny_tokenizer, CONVERSATION)
    ids = [t for s in segments for t in s.token_ids]
    flags = [s.carries_loss for s in segments for _ in s.token_ids]
    assert ids == example.input_ids
    assert flags == [lab != cf.IGNORE_INDEX for lab in example.labels]
    text = "".join(s.text for s in segments)
    assert text == tiny_tokenizer.decode(example.input_ids, skip_special_tokens=False)
    assert tiny_tokenizer(text, add_special_tokens=False)["input_ids"] == example.input_ids
    assert [s.carries_loss for s in segments] == [False, True, False, True]


@pytest.mark.parametrize("name", ["chatml", "llama2", "alpaca", "gemma"])
def test_named_templates(tiny_tokenizer: Any, name: str) -> None:
    example = cf.tokenize_conversation(tiny_tokenizer, CONVERSATION, template=name)
    assert example.template == name
    loss = _loss_texts(tiny_tokenizer, example)
    assert len(loss) == len(ASSISTANT)
    for text, answer in zip(loss, ASSISTANT, strict=True):
        assert text.strip().startswith(answer)
        assert not any(p in text for p in PROMPTS)
    segments = cf.render_preview(tiny_tokenizer, CONVERSATION, template=name)
    assert [t for s in segments for t in s.token_ids] == example.input_ids


def test_without_offsets_the_pieces_agree(tiny_tokenizer: Any) -> None:
    _, jinja = cf.resolve_template(tiny_tokenizer, "chatml")
    text, spans = cf.assistant_spans(tiny_tokenizer, CONVERSATION, jinja)
    assert cf._tokenize_pieces(tiny_tokenizer, text, spans) == cf._tokenize_with_spans(
        tiny_tokenizer, text, spans
    )


def test_trained_tokenizer_works_too() -> None:
    tokenizer = trained_tokenizer()
    example = cf.tokenize_conversation(tokenizer, CONVERSATION)
    assert _loss_texts(tokenizer, example) == [f"{a}<|im_end|>\n" for a in ASSISTANT]


def test_template_choice_without_own_template(tiny_tokenizer: Any) -> None:
    bare = copy.deepcopy(tiny_tokenizer)
    bare.chat_template = None
    # SmolLM2's vocabulary (and the trained one) has <|im_start|> as a token: ChatML it is.
    assert cf.resolve_template(bare, None)[0] == "chatml"
    with pytest.raises(ChatFormatError, match="no chat template"):
        cf.resolve_template(bare, "tokenizer")
    with pytest.raises(ChatFormatError, match="unknown chat template 'vicuna'"):
        cf.resolve_template(bare, "vicuna")


def test_truncation(tiny_tokenizer: Any) -> None:
    full = cf.tokenize_conversation(tiny_tokenizer, CONVERSATION)
    cut = cf.tokenize_conversation(tiny_tokenizer, CONVERSATION, max_length=10)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[:10] and cut.labels == full.labels[:10]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "empty"),
        ([{"role": "user", "content": "hi"}], "no assistant turn"),
        ([{"role": "bot", "content": "hi"}], "needs a role"),
        ([{"role": "assistant", "content": "hi"}], "must start with a user message"),
    ],
)
def test_bad_conversations(tiny_tokenizer: Any, messages: list, message: str) -> None:
    with pytest.raises(ChatFormatError, match=message):
        cf.tokenize_conversation(tiny_tokenizer, messages)


def test_template_that_rewrites_earlier_turns_is_refused(tiny_tokenizer: Any) -> None:
    # Like some Mistral templates, which move the system prompt into the last user turn.
    unstable = (
        "{% for m in messages %}{% if loop.last %}LAST:{% endif %}{{ m['content'] }}{% endfor %}"
    )
    with pytest.raises(ChatFormatError, match="renders earlier turns differently"):
        cf.tokenize_conversation(tiny_tokenizer, CONVERSATION, template=unstable)
