"""LlamaCppEngine: continuous batching over llama.cpp contexts, from one loop thread.

Each loop iteration:
1. drops cancelled requests: a waiting one ends at once, a running one has its KV cells
   removed (llama_memory_seq_rm) and its slot handed back before the next decode;
2. admits waiting requests, oldest first: finds (or loads) the request's model, takes one of
   its sequence slots, renders and tokenizes the prompt;
3. steps ONE model, the next busy one in round-robin order: a single llama_decode carries one
   token of every decoding sequence of that model plus up to `prefill_chunk` prompt tokens of
   sequences still being prefilled (oldest first), so a long prompt enters in chunks between
   decode steps instead of stalling the others; then every sequence that got logits samples
   its next token with its own settings and streams the text to its handle.
Sequences of one model share its context (each its own KV stream, see model.py), kept on streams
0..n-1 and put in the batch in stream order: llama.cpp computes a run of consecutive sequence
ids in one pass but splits anything else (GGUFModel.move_slot); models never share a decode,
and the round-robin gives each busy model one step in turn.

Models are kept loaded in least-recently-used order, at most `max_models` at once; a model
with running sequences is never evicted. When the oldest waiting request needs a model that
cannot be loaded yet (every loaded one busy), admission stops until one drains, so no request
starves. Loading runs on the loop thread (the other models pause meanwhile: mmap'd GGUF files
load in well under a second once in the page cache).
"""

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from workers.inference.decoding import TextStream
from workers.inference.errors import EngineClosed
from workers.inference.events import FinishReason, GenerationRequest
from workers.inference.handle import GenerationHandle, SequenceState
from workers.inference.llamacpp.errors import UnknownModel
from workers.inference.llamacpp.model import GGUFModel
from workers.inference.llamacpp.native import quiet_logs
from workers.inference.llamacpp.sampler import SequenceSampler
from workers.inference.threads import usable_cpus

log = logging.getLogger(__name__)


def model_key(base_id: str, adapter_id: str | None) -> str:
    """The key a request is served under: its adapter's id (each version is its own GGUF, e.g.
    the merged q8_0 file; adapter ids are unique per version) or, without one, its base id."""
    return adapter_id if adapter_id is not None else base_id


@dataclass
class EngineStats:
    """Counters for tests and monitoring; read them once the requests of interest finished."""

    decode_calls: int = 0  # llama_decode calls
    batch_sizes: Counter[int] = field(default_factory=Counter)  # sequences sampled per call
    prefill_tokens: int = 0
    steps_per_model: Counter[str] = field(default_factory=Counter)
    model_switches: int = 0  # consecutive steps on different models
    sequence_moves: int = 0  # sequences moved to a lower KV stream to close a gap


@dataclass(eq=False)
class _Sequence:
    """A running request: its handle's state plus where it lives in llama.cpp."""

    state: SequenceState
    model: GGUFModel
    slot: int  # llama.cpp seq_id: the KV stream it owns
    prompt: list[int]
    sampler: SequenceSampler
    fed: int = 0  # prompt tokens already in the KV cache

    @property
    def prefilled(self) -> bool:
        return self.fed == len(self.prompt)


@dataclass(eq=False)
class _Served:
    """A loaded model and its running sequences (loop thread only)."""

    model: GGUFModel
    prefilling: list[_Sequence] = field(default_factory=list)  # oldest first
    decoding: list[_Sequence] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.prefilling or self.decoding)


class LlamaCppEngine:
    """Thread-safe front: register_model() and submit() from any thread; one loop thread does
    every llama.cpp call.

    Contract (as Scheduler's): every submitted request ends with exactly one DoneEvent, whatever
    happens to other requests; one request's failure (unknown model, bad template, prompt too
    long) does not affect the others, except that a failed llama_decode ends every sequence of
    that model's step; cancel() frees the request's KV cells before the next decode; every
    sampled token id appears in exactly one TokenEvent.
    """

    def __init__(
        self,
        *,
        n_threads: int | None = None,
        max_sequences: int = 8,
        max_context: int = 4096,
        prefill_chunk: int = 128,
        max_models: int = 2,
        flash_attn: bool = False,
    ) -> None:
        """n_threads: llama.cpp threads per decode (default: the CPUs this process may use).
        max_sequences: concurrent sequences per model (KV streams). max_context: tokens per
        sequence, prompt and answer together (capped by the model's trained context).
        prefill_chunk: prompt tokens per decode step. max_models: models kept loaded.
        flash_attn: llama.cpp's flash attention: faster batched decoding, but batched answers
        may then differ from lone ones (see GGUFModel)."""
        if max_sequences < 1 or prefill_chunk < 1 or max_models < 1 or max_context < 2:
            raise ValueError(
                "max_sequences, prefill_chunk and max_models must be >= 1, max_context >= 2"
            )
        quiet_logs()
        self.n_threads = n_threads or usable_cpus()
        self.max_sequences = max_sequences
        self.max_context = max_context
        self.prefill_chunk = prefill_chunk
        self.max_models = max_models
        self.flash_attn = flash_attn
        self.load_count: Counter[str] = Counter()
        self.stats = EngineStats()
        self._paths: dict[str, Path] = {}
        self._meta = threading.Lock()  # guards _paths and the list of loaded keys
        self._loaded_keys: list[str] = []  # least recently used first, for other threads
        self._wake = threading.Condition()
        self._inbox: list[SequenceState] = []
        self._closing = False
        self._thread: threading.Thread | None = None
        # Loop thread only:
        self._waiting: deque[SequenceState] = deque()
        self._served: OrderedDict[str, _Served] = OrderedDict()  # LRU, oldest first
        self._turns: deque[str] = deque()  # round-robin order of loaded keys
        self._last_stepped: str | None = None

    # -- public API ----------------------------------------------------------------------------

    def register_model(self, key: str, gguf_path: str | Path) -> None:
        """Serve `key` from `gguf_path` (loaded when first needed). Registering a key again with
        another file takes effect when the key is next loaded."""
        with self._meta:
            self._paths[key] = Path(gguf_path)

    def registered(self, key: str) -> bool:
        with self._meta:
            return key in self._paths

    def loaded_models(self) -> list[str]:
        """Keys of the loaded models, least recently used first."""
        with self._meta:
            return list(self._loaded_keys)

    def start(self) -> "LlamaCppEngine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="llamacpp-loop", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> "LlamaCppEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the loop and free every model; unfinished requests end with
        DoneEvent(cancelled, EngineClosed)."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._shutdown()  # never started: still end every request with a DoneEvent

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Queue a request and return at once. Raises EngineClosed after close()."""
        state = SequenceState(request, queue.SimpleQueue(), time.perf_counter())
        with self._wake:
            if self._closing:
                raise EngineClosed("the llama.cpp engine is closed")
            self._inbox.append(state)
            self._wake.notify_all()
        return GenerationHandle(state, self._notify)

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- the loop thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._serve()
        finally:
            self._shutdown()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not (self._closing or self._inbox or self._waiting or self._busy()):
                    self._wake.wait()
                if self._closing:
                    return
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            served: _Served | None = None
            try:
                self._drop_cancelled()
                self._admit()
                served = self._next_turn()
                if served is not None:
                    self._step(served)
            except Exception as exc:  # a failed decode or a bug must never leave requests hanging
                log.exception("llama.cpp engine step failed")
                if served is not None:
                    self._fail_model(served, exc)
            if served is None and self._waiting and not self._busy():
                # Nothing runs yet requests wait: only a failing admission can do that; never
                # spin on it.
                time.sleep(0.01)

    def _busy(self) -> bool:
        return any(s.busy for s in self._served.values())

    def _shutdown(self) -> None:
        with self._wake:
            self._closing = True
            leftovers = [*self._inbox, *self._waiting]
            self._inbox.clear()
            self._waiting.clear()
        closed = EngineClosed("the llama.cpp engine was closed")
        for state in leftovers:
            state.finish("cancelled", closed)
        for key in list(self._served):
            self._fail_model(self._served[key], closed, reason="cancelled")
            self._unload(key)

    def _drop_cancelled(self) -> None:
        for state in [s for s in self._waiting if s.cancelled.is_set()]:
            self._waiting.remove(state)
            state.finish("cancelled")
        for served in self._served.values():
            for group in (served.prefilling, served.decoding):
                for seq in [s for s in group if s.state.cancelled.is_set()]:
                    group.remove(seq)
                    self._retire(seq, "cancelled")

    # -- admission and models ------------------------------------------------------------------

    def _admit(self) -> None:
        for state in list(self._waiting):
            request = state.request
            key = model_key(request.base_id, request.adapter_id)
            try:
                served = self._ensure_model(key)
            except Exception as exc:
                self._waiting.remove(state)
                state.finish("error", exc)
                continue
            if served is None:
                return  # the oldest blocked request waits for a model to drain; so do the rest
            slot = served.model.take_slot()
            if slot is None:
                continue  # this model is full; requests for other models may still go in
            self._waiting.remove(state)
            try:
                seq = self._prepare(state, served.model, slot)
            except Exception as exc:
                served.model.free_slot(slot)
                state.finish("error", exc)
                continue
            served.prefilling.append(seq)

    def _prepare(self, state: SequenceState, model: GGUFModel, slot: int) -> _Sequence:
        request = state.request
        prompt = model.encode_prompt(request)
        state.prompt_len = len(prompt)
        state.stream = TextStream(
            model.vocab, prompt, stop=request.stop, eos_token_ids=model.eog_ids,
            ignore_eos=request.ignore_eos,
        )  # fmt: skip
        return _Sequence(state, model, slot, prompt, SequenceSampler(request, prompt, model))

    def _ensure_model(self, key: str) -> _Served | None:
        """The loaded model for `key`, loading it (evicting idle ones) if needed; None when
        every loaded model is busy and none may be evicted yet. Raises UnknownModel or
        ModelLoadFailed."""
        served = self._served.get(key)
        if served is not None:
            self._served.move_to_end(key)
            self._publish_loaded()
            return served
        with self._meta:
            path = self._paths.get(key)
        if path is None:
            raise UnknownModel(f"no GGUF file is registered for {key!r}")
        while len(self._served) >= self.max_models:
            idle = next((k for k, s in self._served.items() if not s.busy), None)
            if idle is None:
                return None
            self._unload(idle)
        model = GGUFModel(
            key, path, n_threads=self.n_threads, max_sequences=self.max_sequences,
            max_context=self.max_context, batch_tokens=self.prefill_chunk + self.max_sequences,
            flash_attn=self.flash_attn,
        )  # fmt: skip
        self.load_count[key] += 1
        self._served[key] = _Served(model)
        self._turns.append(key)
        self._publish_loaded()
        return self._served[key]

    def _unload(self, key: str) -> None:
        served = self._served.pop(key)
        self._turns.remove(key)
        served.model.close()
        self._publish_loaded()

    def _publish_loaded(self) -> None:
        with self._meta:
            self._loaded_keys = list(self._served)

    # -- stepping ------------------------------------------------------------------------------

    def _next_turn(self) -> _Served | None:
        for _ in range(len(self._turns)):
            key = self._turns[0]
            self._turns.rotate(-1)
            if self._served[key].busy:
                return self._served[key]
        return None

    def _step(self, served: _Served) -> None:
        """One llama_decode for `served`: a token of each decoding sequence plus a prompt chunk."""
        self._compact(served)
        model = served.model
        budget = self.prefill_chunk
        chunks: dict[int, list[int]] = {}  # id(sequence) -> prompt tokens it feeds now
        for seq in served.prefilling:  # oldest first
            if budget <= 0:
                break
            chunks[id(seq)] = seq.prompt[seq.fed : seq.fed + budget]
            budget -= len(chunks[id(seq)])
        batch = model.batch
        batch.clear()
        rows: list[tuple[_Sequence, int]] = []  # sequences that sample after this decode
        entered: list[_Sequence] = []
        # In stream order: llama.cpp computes a run of consecutive sequence ids together.
        taking_part = [*served.decoding, *(s for s in served.prefilling if id(s) in chunks)]
        for seq in sorted(taking_part, key=lambda s: s.slot):
            chunk = chunks.get(id(seq))
            if chunk is None:
                position = len(seq.prompt) + seq.state.generated - 1
                rows.append((seq, batch.add([seq.state.last_token], position, seq.slot, True)))
                continue
            last = seq.fed + len(chunk) == len(seq.prompt)
            index = batch.add(chunk, seq.fed, seq.slot, last)
            seq.fed += len(chunk)
            self.stats.prefill_tokens += len(chunk)
            if last:
                rows.append((seq, index))
                entered.append(seq)
        model.decode()
        self._count_step(model.key, len(rows))
        for seq in entered:
            served.prefilling.remove(seq)
            served.decoding.append(seq)
        for seq, index in rows:
            try:
                token = seq.sampler.choose(model, index)
                finished = seq.state.accept(token, model.context_length)
            except Exception as exc:
                served.decoding.remove(seq)
                self._retire(seq, "error", exc)
                continue
            if finished:  # accept() sent the DoneEvent already
                served.decoding.remove(seq)
                self._retire(seq)

    def _compact(self, served: _Served) -> None:
        """Keep the model's running sequences on KV streams 0..n-1 (GGUFModel.move_slot says
        why): the highest one moves down into the lowest free stream until no gap is left."""
        running = [*served.prefilling, *served.decoding]
        while running:
            top = max(running, key=lambda s: s.slot)
            free = served.model.lowest_free_slot()
            if free is None or free > top.slot:
                return
            served.model.move_slot(top.slot, free)
            top.slot = free
            self.stats.sequence_moves += 1

    def _count_step(self, key: str, sampled: int) -> None:
        stats = self.stats
        stats.decode_calls += 1
        stats.batch_sizes[sampled] += 1
        stats.steps_per_model[key] += 1
        if self._last_stepped is not None and self._last_stepped != key:
            stats.model_switches += 1
        self._last_stepped = key

    def _retire(
        self, seq: _Sequence, reason: FinishReason | None = None, error: Exception | None = None
    ) -> None:
        """Free the sequence's KV cells, slot and sampler; finish it if `reason`."""
        try:
            seq.model.free_slot(seq.slot)
            seq.sampler.close()
        finally:
            if reason is not None:
                seq.state.finish(reason, error)

    def _fail_model(self, served: _Served, exc: Exception, reason: FinishReason = "error") -> None:
        """End every sequence of a model (after a failed step, or at shutdown)."""
        sequences = [*served.prefilling, *served.decoding]
        served.prefilling.clear()
        served.decoding.clear()
        for seq in sequences:
            seq.sampler.close()
            seq.state.finish(reason, exc)
        served.model.clear()
