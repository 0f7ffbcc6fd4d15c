"""Thin helpers over llama-cpp-python's ctypes API (llama.h) for the serving engine.

Only the engine's loop thread calls these (llama.cpp objects are not thread-safe); ctypes
releases the GIL during each foreign call, so consumers keep running while llama_decode works.
"""

import ctypes
import logging
from collections.abc import Sequence

import llama_cpp
import numpy as np

INT32_MIN = -(2**31)


def quiet_logs() -> None:
    """llama-cpp-python installs a log callback at import that prints every llama.cpp line
    (model metadata, context sizes) to stderr unless its logger has a level; keep errors only,
    unless someone configured that logger already."""
    logger = logging.getLogger("llama-cpp-python")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


class Vocab:
    """A model's vocabulary: tokenizing with special tokens parsed, pieces, end-of-generation ids.

    decode() has the signature workers.inference.decoding.TextStream expects of a tokenizer,
    so the engine reuses its incremental detokenizer and stop-sequence matcher unchanged.
    """

    def __init__(self, model: llama_cpp.llama_model_p) -> None:
        self.ptr = llama_cpp.llama_model_get_vocab(model)
        self.size = int(llama_cpp.llama_vocab_n_tokens(self.ptr))
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._buffer = ctypes.create_string_buffer(256)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text`: special tokens such as <|im_start|> read as themselves, nothing
        added (chat templates write BOS themselves when the model wants one), as
        tokenizer(text, add_special_tokens=False) does in transformers."""
        data = text.encode("utf-8")
        capacity = len(data) + 8  # never more tokens than bytes, plus room for specials
        while True:
            out = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.ptr, data, len(data), out, capacity, False, True)
            if n == INT32_MIN:
                raise ValueError("the text is too long to tokenize")
            if n >= 0:
                return list(out[:n])
            capacity = -n

    def piece(self, token: int, special: bool = False) -> bytes:
        """Bytes of one token as it reads in text (special=False renders control tokens as
        nothing, like skip_special_tokens); cached, a vocabulary never changes."""
        key = (token, special)
        cached = self._pieces.get(key)
        if cached is None:
            n = llama_cpp.llama_token_to_piece(
                self.ptr, token, self._buffer, len(self._buffer), 0, special
            )
            if n < 0:
                self._buffer = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(
                    self.ptr, token, self._buffer, len(self._buffer), 0, special
                )
            cached = self._pieces[key] = self._buffer.raw[:n]
        return cached

    def decode(
        self,
        ids: Sequence[int],
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool = False,
    ) -> str:
        """Text of `ids`; a character cut in half at the end reads as U+FFFD, as in transformers
        (TextStream waits for its remaining bytes). clean_up_tokenization_spaces is ignored:
        the engine never asks for it."""
        special = not skip_special_tokens
        return b"".join(self.piece(i, special) for i in ids).decode("utf-8", "replace")

    def token_text(self, token: int) -> str:
        """The token's text in the vocabulary (what a template's bos_token/eos_token holds)."""
        if token < 0:
            return ""
        return (llama_cpp.llama_vocab_get_text(self.ptr, token) or b"").decode("utf-8", "replace")

    def end_of_generation_ids(self) -> frozenset[int]:
        """Every id llama.cpp ends a generation on (EOS, EOT, <|im_end|>...): the whole
        vocabulary asked once (about 15 ms for 49k tokens) so TextStream gets a plain set."""
        is_eog = llama_cpp.llama_vocab_is_eog
        return frozenset(i for i in range(self.size) if is_eog(self.ptr, i))

    def special_ids(self) -> tuple[int, int]:
        """(BOS, EOS) ids, -1 where the model has none."""
        return int(llama_cpp.llama_vocab_bos(self.ptr)), int(llama_cpp.llama_vocab_eos(self.ptr))


class Batch:
    """A reusable llama_batch of single-sequence tokens, written through numpy views."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, 1)
        self._token = np.ctypeslib.as_array(self.raw.token, shape=(capacity,))
        self._pos = np.ctypeslib.as_array(self.raw.pos, shape=(capacity,))
        self._logits = np.ctypeslib.as_array(self.raw.logits, shape=(capacity,))
        np.ctypeslib.as_array(self.raw.n_seq_id, shape=(capacity,))[:] = 1
        self._seq = self.raw.seq_id
        self.size = 0

    def clear(self) -> None:
        self.size = 0

    def add(self, tokens: Sequence[int], start: int, seq_id: int, last_logits: bool) -> int:
        """Append `tokens` of sequence `seq_id` at positions start, start+1, ...; only the last
        one asks for logits, and only if last_logits. Returns the batch index of the last."""
        n = len(tokens)
        end = self.size + n
        if end > self.capacity:
            raise ValueError(f"batch overflow: {end} tokens, capacity {self.capacity}")
        self._token[self.size : end] = tokens
        self._pos[self.size : end] = np.arange(start, start + n)
        self._logits[self.size : end] = 0
        self._logits[end - 1] = 1 if last_logits else 0
        seq = self._seq
        for i in range(self.size, end):
            seq[i][0] = seq_id
        self.size = end
        return end - 1

    def ready(self) -> llama_cpp.llama_batch:
        self.raw.n_tokens = self.size
        return self.raw

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.raw)
