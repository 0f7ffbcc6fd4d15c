"""Incremental detokenization (no U+FFFD mid-character), stop sequences and EOS handling."""

from typing import Any

import pytest

from workers.inference.decoding import (
    REPLACEMENT_CHAR,
    IncrementalDetokenizer,
    StopMatcher,
    TextStream,
)

CHINESE = "北京是中国的首都。巴黎是法国的首都，你好吗？"
EMOJI = "Great job 👍🏽! Family: 👨‍👩‍👧 party 🎉🥳 done"


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("text", [CHINESE, EMOJI, "mixed 中文 and 😀 emoji 混合"])
def test_multibyte_text_streams_without_replacement_chars(
    inference_tokenizer: Any, text: str
) -> None:
    ids = _ids(inference_tokenizer, text)
    # The test only means something if some character spans several tokens.
    singles = [inference_tokenizer.decode([i]) for i in ids]
    assert any(REPLACEMENT_CHAR in s for s in singles)
    detok = IncrementalDetokenizer(inference_tokenizer)
    deltas = [detok.push(i) for i in ids]
    deltas.append(detok.flush())
    assert all(REPLACEMENT_CHAR not in d for d in deltas)
    assert "".join(deltas) == text


def test_detokenizer_keeps_spacing_with_prompt_context(inference_tokenizer: Any) -> None:
    prompt = _ids(inference_tokenizer, "<|im_start|>assistant\n")
    answer = "Hello there, world! How are you?"
    detok = IncrementalDetokenizer(inference_tokenizer, prompt)
    text = "".join(detok.push(i) for i in _ids(inference_tokenizer, answer)) + detok.flush()
    assert text == answer


def test_flush_drops_an_unfinished_character(inference_tokenizer: Any) -> None:
    ids = _ids(inference_tokenizer, "ok 🎉")
    partial = next(
        n
        for n in range(1, len(ids))
        if inference_tokenizer.decode(ids[:n]).endswith(REPLACEMENT_CHAR)
    )
    detok = IncrementalDetokenizer(inference_tokenizer)
    emitted = "".join(detok.push(i) for i in ids[:partial]) + detok.flush()
    assert REPLACEMENT_CHAR not in emitted and emitted.startswith("ok")


def test_stop_sequence_split_across_chunks_is_never_emitted() -> None:
    matcher = StopMatcher(["\n\nUser:"])
    out = []
    for chunk in ["Hel", "lo\n", "\nUs", "er: more"]:
        text, stopped = matcher.push(chunk)
        out.append(text)
        if stopped:
            break
    assert stopped and "".join(out) == "Hello"
    assert all("\n" not in piece for piece in out)


def test_held_text_is_released_when_no_stop_follows() -> None:
    matcher = StopMatcher(["abc"])
    assert matcher.push("xa") == ("x", False)
    assert matcher.push("b") == ("", False)
    assert matcher.push("d") == ("abd", False)
    assert matcher.push("ab") == ("", False)
    assert matcher.flush() == "ab"


def test_earliest_of_several_stops_wins() -> None:
    matcher = StopMatcher(["END", "stop here"])
    assert matcher.push("please stop here and END") == ("please ", True)


def test_stop_string_split_across_real_tokens(inference_tokenizer: Any) -> None:
    text = "The answer is 42.</answer> and then some more text"
    ids = _ids(inference_tokenizer, text)
    stream = TextStream(inference_tokenizer, [], stop=["</answer>"])
    emitted, finished = [], False
    for token in ids:
        update = stream.push(token)
        emitted.append(update.text)
        assert "<" not in update.text  # nothing of the stop sequence leaks, not even "<"
        if update.finished:
            finished = True
            break
    assert finished and "".join(emitted) == "The answer is 42."


def test_eos_finishes_and_is_not_shown(inference_tokenizer: Any) -> None:
    eos = inference_tokenizer.eos_token_id
    ids = _ids(inference_tokenizer, "Bye 👋")
    stream = TextStream(inference_tokenizer, [], eos_token_ids=[eos], stop=["zz"])
    texts = [stream.push(i).text for i in ids]
    update = stream.push(eos)
    assert update.finished and "".join(texts) + update.text == "Bye 👋"
    assert (
        not TextStream(inference_tokenizer, [], eos_token_ids=[eos], ignore_eos=True)
        .push(eos)
        .finished
    )


def test_length_finish_releases_a_held_stop_prefix(inference_tokenizer: Any) -> None:
    stream = TextStream(inference_tokenizer, [], stop=["###"])
    shown = "".join(stream.push(i).text for i in _ids(inference_tokenizer, "total: 5 #"))
    assert shown == "total: 5 " and stream.finish() == "#"
