"""From sampled token ids to the text a user sees: incremental detokenization, stop sequences, EOS.

Byte-level BPE tokenizers (SmolLM2, Qwen, ...) split one Chinese character or emoji over several
tokens, and decoding a prefix that ends inside a character yields U+FFFD. SentencePiece
tokenizers drop a leading space when a token is decoded alone. IncrementalDetokenizer handles
both the way serving stacks usually do: it decodes a short window of ids that starts a few
tokens back (so spacing comes out as in a full decode) and only releases text once it does not
end in U+FFFD. StopMatcher holds back any tail that could still grow into a stop sequence, so a
consumer never sees part of one. TextStream ties the two together with EOS handling.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

REPLACEMENT_CHAR = "\ufffd"
# Prompt tokens kept as decoding context: enough for SentencePiece to place the first space.
CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """Turns a growing sequence of token ids into text deltas that never end in half a character.

    Each push decodes only the ids from the start of the previous delta onwards, so the cost per
    token stays constant however long the output grows.
    """

    def __init__(
        self, tokenizer: Any, prompt_ids: Sequence[int] = (), *, skip_special_tokens: bool = True
    ) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        self._ids: list[int] = list(prompt_ids[-CONTEXT_TOKENS:])
        self._prefix = 0  # where the decode window starts
        self._read = len(self._ids)  # ids before this have been turned into emitted text
        self._prefix_text = self._decode(self._prefix, self._read)

    def _decode(self, start: int, end: int | None = None) -> str:
        return str(
            self._tokenizer.decode(
                self._ids[start:end],
                skip_special_tokens=self._skip_special,
                clean_up_tokenization_spaces=False,
            )
        )

    def push(self, token_id: int) -> str:
        """Add one token; return the newly completed text (often "", never a trailing U+FFFD)."""
        self._ids.append(token_id)
        text = self._decode(self._prefix)
        if len(text) <= len(self._prefix_text) or text.endswith(REPLACEMENT_CHAR):
            # Nothing new, or the last character is still missing bytes: wait for more tokens.
            return ""
        delta = text[len(self._prefix_text) :]
        self._prefix, self._read = self._read, len(self._ids)
        self._prefix_text = self._decode(self._prefix, self._read)
        return delta

    def flush(self) -> str:
        """Text not yet released at the end of generation, minus an unfinished last character."""
        text = self._decode(self._prefix)
        delta = text[len(self._prefix_text) :] if len(text) > len(self._prefix_text) else ""
        self._prefix, self._read = len(self._ids), len(self._ids)
        self._prefix_text = ""
        # An unfinished multi-byte character can never complete now; showing U+FFFD for it would
        # only put a garbage glyph at the end of the answer.
        return delta.rstrip(REPLACEMENT_CHAR)


class StopMatcher:
    """Finds stop sequences in streamed text without ever releasing part of one."""

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """(text safe to release, whether a stop sequence was reached).

        On a stop, the released text ends right before the earliest stop sequence and the stop
        sequence itself is dropped, as OpenAI-style APIs do.
        """
        if not self._stops:
            return text, False
        buffer = self._held + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._held = ""
            return buffer[: min(hits)], True
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def _partial_tail(self, buffer: str) -> int:
        """Length of the longest tail of `buffer` that is a proper prefix of a stop sequence."""
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best

    def flush(self) -> str:
        """Held-back text at the end of generation: it never grew into a stop sequence."""
        held, self._held = self._held, ""
        return held


@dataclass(frozen=True)
class StreamUpdate:
    text: str  # text to show now (may be "")
    finished: bool  # EOS or a stop sequence ended the completion


class TextStream:
    """Per-request output state: detokenizer, stop sequences and end-of-sequence ids."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: Sequence[int],
        *,
        stop: Iterable[str] = (),
        eos_token_ids: Iterable[int] = (),
        ignore_eos: bool = False,
    ) -> None:
        self._detok = IncrementalDetokenizer(tokenizer, prompt_ids)
        self._stops = StopMatcher(stop)
        self._eos = frozenset(() if ignore_eos else eos_token_ids)

    def push(self, token_id: int) -> StreamUpdate:
        """Feed one sampled token; on EOS or a stop sequence the completion is finished."""
        if token_id in self._eos:
            # EOS is not part of the answer: release what was held back and stop.
            return StreamUpdate(self.finish(), True)
        text, stopped = self._stops.push(self._detok.push(token_id))
        return StreamUpdate(text, stopped)

    def finish(self) -> str:
        """Everything still held back, when generation ends for any reason but a stop sequence."""
        text, stopped = self._stops.push(self._detok.flush())
        return text if stopped else text + self._stops.flush()
