"""One GGUF file loaded by llama.cpp: weights, one context whose KV cache holds a fixed number of
sequences, the vocabulary, and the chat prompt rendered for a request.

KV layout: the context is made with kv_unified=False, so each of the `max_sequences`
sequences owns its own KV stream of `context_length` cells and attention runs per stream.
Measured on a quiet 2-core AVX2 CPU (SmolLM2-135M q8_0, 2 threads, 128 greedy tokens): one
sequence 72 tokens/s either way, 8 batched sequences 194 tokens/s against 180 with one unified
buffer, and only the per-stream layout kept each batched answer bit-equal to the lone one.
The whole KV cache is allocated up front: max_sequences x context_length cells (SmolLM2-135M:
23 KB per cell in f16, so 8 x 4096 cells take 750 MB).

Flash attention is off by default. It is faster on that CPU (one decode step of 1, 4 and 8
sequences: 12.2, 23.8 and 31.6 ms against 13.1, 28.0 and 40.8), but its numbers change with
what shares the batch: an f16 model's batched greedy answers drifted from its lone ones, which
the default path never does. flash_attn=True is there for whoever prefers the speed.
"""

from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from workers.export.chat_render import render_chat
from workers.inference.errors import PromptTooLong
from workers.inference.events import GenerationRequest
from workers.inference.llamacpp.errors import DecodeFailed, ModelLoadFailed
from workers.inference.llamacpp.native import Batch, Vocab, quiet_logs
from workers.inference.prompts import request_conversation
from workers.ml.chat_format import resolve_template
from workers.ml.errors import ChatFormatError


class _TemplateView:
    """What resolve_template reads of a transformers tokenizer, answered from the GGUF."""

    unk_token_id = None

    def __init__(self, chat_template: str | None, vocab: Vocab) -> None:
        self.chat_template = chat_template
        self._vocab = vocab

    def convert_tokens_to_ids(self, token: str) -> int | None:
        ids = self._vocab.tokenize(token)
        return ids[0] if len(ids) == 1 else None  # one id: the vocabulary knows the token


class GGUFModel:
    """A loaded GGUF file and its context; used by the engine's loop thread only.

    Sequences are KV streams 0..max_sequences-1 (llama.cpp's seq_id): take_slot() hands one
    out, free_slot() removes its cells from the cache and returns it.
    """

    def __init__(
        self,
        key: str,
        path: str | Path,
        *,
        n_threads: int,
        max_sequences: int,
        max_context: int,
        batch_tokens: int,
        flash_attn: bool = False,
    ) -> None:
        quiet_logs()
        self.key = key
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadFailed(f"the GGUF file {self.path} does not exist")
        model_params = llama_cpp.llama_model_default_params()
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), model_params)
        if not self._model:
            raise ModelLoadFailed(f"llama.cpp could not load {self.path}")
        self._ctx: Any = None
        self._batch: Batch | None = None
        try:
            self._init_context(n_threads, max_sequences, max_context, batch_tokens, flash_attn)
        except BaseException:
            self.close()
            raise

    def _init_context(
        self,
        n_threads: int,
        max_sequences: int,
        max_context: int,
        batch_tokens: int,
        flash_attn: bool,
    ) -> None:
        trained = int(llama_cpp.llama_model_n_ctx_train(self._model))
        per_sequence = min(trained, max_context) if trained > 0 else max_context
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = per_sequence * max_sequences
        params.n_seq_max = max_sequences
        params.kv_unified = False  # one KV stream per sequence (see the module docstring)
        params.n_batch = params.n_ubatch = batch_tokens
        params.n_threads = params.n_threads_batch = n_threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise ModelLoadFailed(
                f"llama.cpp could not make a context of {params.n_ctx} tokens for {self.path}"
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        # llama.cpp may round the context up; never promise more than the model was trained on.
        self.context_length = min(int(llama_cpp.llama_n_ctx_seq(self._ctx)), per_sequence)
        self.max_sequences = max_sequences
        self._batch = Batch(batch_tokens)
        self.vocab = Vocab(self._model)
        self.eog_ids = self.vocab.end_of_generation_ids()
        raw = llama_cpp.llama_model_chat_template(self._model, None)
        self.chat_template: str | None = raw.decode("utf-8") if raw else None
        self._free_slots = set(range(max_sequences))

    @property
    def ctx(self) -> Any:
        return self._ctx

    @property
    def batch(self) -> Batch:
        assert self._batch is not None
        return self._batch

    # -- sequences -----------------------------------------------------------------------------

    def lowest_free_slot(self) -> int | None:
        return min(self._free_slots) if self._free_slots else None

    def take_slot(self) -> int | None:
        """The lowest free stream (see move_slot for why low ones first), or None."""
        slot = self.lowest_free_slot()
        if slot is not None:
            self._free_slots.remove(slot)
        return slot

    def free_slot(self, slot: int) -> None:
        """Drop every KV cell of the sequence now, so the next one starts from an empty stream."""
        llama_cpp.llama_memory_seq_rm(self._memory, slot, -1, -1)
        self._free_slots.add(slot)

    def move_slot(self, source: int, target: int) -> None:
        """Move a sequence's cells from stream `source` to the free stream `target`.

        Why: with one KV stream per sequence, llama_decode splits a batch into one graph
        computation per run of consecutive, increasing sequence ids (llama.cpp's
        split_equal(sequential) for non-unified caches), and each computation reads all the
        weights again. Measured (SmolLM2-135M q8_0, 2 threads, one decode step): sequences
        0,1,2,3 take 29 ms, 0,2,4,6 or 3,2,1,0 take 57 ms; 0..7 take 41 ms, 7..0 take 113 ms.
        The engine therefore keeps running sequences on streams 0..n-1, in order. The copy
        (applied by the next llama_decode) costs about one decode step for a 4096-cell stream.
        """
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)
        llama_cpp.llama_memory_seq_rm(self._memory, source, -1, -1)
        self._free_slots.remove(target)
        self._free_slots.add(source)

    def clear(self) -> None:
        """Empty the whole KV cache and free every slot (after a failed step)."""
        llama_cpp.llama_memory_clear(self._memory, True)
        self._free_slots = set(range(self.max_sequences))

    # -- prompts -------------------------------------------------------------------------------

    def encode_prompt(self, request: GenerationRequest) -> list[int]:
        """Token ids of the request's conversation rendered with its chat template.

        request.template as for the transformers engine (workers.ml.chat_format.
        resolve_template): None or "tokenizer" is the template stored in the GGUF, else a named
        template or Jinja source. Rendered by transformers' own renderer with the GGUF's BOS/EOS
        texts, then tokenized by llama.cpp with special tokens parsed and none added (as
        training renders: apply_chat_template, then add_special_tokens=False). Raises
        ChatFormatError or PromptTooLong.
        """
        messages = request_conversation(request)
        _, jinja = resolve_template(_TemplateView(self.chat_template, self.vocab), request.template)
        template = jinja if jinja is not None else self.chat_template
        assert template is not None  # resolve_template returns None only for an own template
        bos, eos = self.vocab.special_ids()
        try:
            text = render_chat(
                template,
                messages,
                bos_token=self.vocab.token_text(bos),
                eos_token=self.vocab.token_text(eos),
            )
        except Exception as exc:  # jinja raises its own types, and templates call raise_exception
            raise ChatFormatError(f"the chat template failed on this conversation: {exc}") from exc
        ids = self.vocab.tokenize(text)
        if len(ids) > self.context_length:
            raise PromptTooLong(len(ids), self.context_length)
        return ids

    # -- compute -------------------------------------------------------------------------------

    def decode(self) -> None:
        """Run llama_decode on the batch as filled since its last clear()."""
        code = llama_cpp.llama_decode(self._ctx, self.batch.ready())
        if code != 0:
            raise DecodeFailed(f"llama_decode returned {code} on {self.path.name}")

    def logits(self, index: int) -> np.ndarray:
        """Float32 logits of batch row `index` of the last decode: a view, valid until the next."""
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, index)
        if not pointer:
            raise DecodeFailed(f"llama.cpp has no logits for batch row {index}")
        return np.ctypeslib.as_array(pointer, shape=(self.vocab.size,))

    def close(self) -> None:
        if self._batch is not None:
            self._batch.free()
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None
