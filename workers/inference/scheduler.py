"""Continuous batching: one loop thread serves every submitted request of an InferenceEngine.

Each loop iteration (under engine.lock, in inference mode):
1. drops cancelled requests, freeing their batch rows;
2. admits at most one waiting request: loads/attaches what it needs, renders and prefills its
   prompt as a new row (one prefill per iteration keeps the other streams flowing);
3. runs one decode step for all active rows in a single forward pass, whatever adapter each
   row uses, samples each row with its own settings and streams the text to its handle.
A batch holds one base model. Admission is first-come first-served: when the oldest waiting
request needs another base, admission pauses until the batch drains, then the engine switches
bases (so no request starves and a base is never evicted under an active sequence).
"""

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from workers.inference.decoding import TextStream
from workers.inference.engine import InferenceEngine, LoadedBase
from workers.inference.errors import EngineClosed
from workers.inference.events import DoneEvent, Event, FinishReason, GenerationRequest, TokenEvent
from workers.inference.sampling import RowSampler, SamplingParams, choose_tokens

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Sequence:
    request: GenerationRequest
    events: "queue.SimpleQueue[Event]"
    submitted: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    base: LoadedBase | None = None  # set once acquired (pinned) from the engine
    prompt_len: int = 0
    stream: TextStream | None = None
    sampler: RowSampler | None = None
    last_token: int = 0
    generated: int = 0
    pending_ids: list[int] = field(default_factory=list)
    first_token_at: float | None = None


@dataclass(frozen=True)
class GenerationResult:
    text: str
    token_ids: tuple[int, ...]
    done: DoneEvent


class GenerationHandle:
    """A submitted request: iterate it for TokenEvents then one DoneEvent; cancel() any time."""

    def __init__(self, sequence: _Sequence, wake: threading.Condition) -> None:
        self._sequence = sequence
        self._wake = wake
        self.request_id = sequence.request.request_id

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events until the DoneEvent; raises queue.Empty if one takes longer than `timeout`."""
        while True:
            event = self._sequence.events.get(timeout=timeout)
            yield event
            if isinstance(event, DoneEvent):
                return

    def cancel(self) -> None:
        """Stop generating; the row is freed at the next step and a DoneEvent(cancelled) sent."""
        self._sequence.cancelled.set()
        with self._wake:
            self._wake.notify_all()

    def result(self, timeout: float | None = None) -> GenerationResult:
        """Wait for the whole completion (consumes the events)."""
        texts: list[str] = []
        ids: list[int] = []
        for event in self.events(timeout):
            if isinstance(event, TokenEvent):
                texts.append(event.text)
                ids.extend(event.token_ids)
            else:
                return GenerationResult("".join(texts), tuple(ids), event)
        raise AssertionError("unreachable: events() ends with a DoneEvent")


@dataclass
class SchedulerStats:
    """Counters for tests and monitoring; read them after the requests of interest finished."""

    decode_steps: int = 0
    prefills: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)  # rows per decode step
    mixed_adapter_steps: int = 0  # decode steps whose rows used more than one adapter (or none)


class Scheduler:
    """Thread-safe front of the engine: submit() from any thread, one loop thread generates.

    Contract: every submitted request MUST end with exactly one DoneEvent, whatever happens to
    other requests; an error in one request (bad template, prompt too long, broken adapter)
    MUST NOT affect the others; cancel() MUST free the request's row at the next loop step.
    """

    def __init__(self, engine: InferenceEngine, *, max_batch_size: int | None = None) -> None:
        self.engine = engine
        self.max_batch_size = max_batch_size or engine.max_batch_size
        self.stats = SchedulerStats()
        self._wake = threading.Condition()
        self._inbox: list[_Sequence] = []
        self._waiting: deque[_Sequence] = deque()
        self._active: list[_Sequence] = []  # index == runner row
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> "Scheduler":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="inference-loop", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> "Scheduler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the loop; requests still running end with DoneEvent(cancelled, EngineClosed)."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._shutdown()  # never started: still end every request with a DoneEvent

    def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Queue a request; returns immediately. Raises EngineClosed after close()."""
        sequence = _Sequence(request, queue.SimpleQueue(), time.perf_counter())
        with self._wake:
            if self._closing:
                raise EngineClosed("the inference scheduler is closed")
            self._inbox.append(sequence)
            self._wake.notify_all()
        return GenerationHandle(sequence, self._wake)

    # -- the loop thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._closing or self._inbox or self._waiting or self._active):
                    self._wake.wait()
                if self._closing:
                    break
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            try:
                with self.engine.lock, torch.inference_mode():
                    self._drop_cancelled()
                    self._admit_one()
                    if self._active:
                        self._decode_step()
            except Exception as exc:  # a bug must not leave requests hanging forever
                log.exception("inference loop step failed")
                self._fail_active(exc)
        self._shutdown()

    def _shutdown(self) -> None:
        with self._wake:
            leftovers = [*self._inbox, *self._waiting]
            self._inbox.clear()
            self._waiting.clear()
        closed = EngineClosed("the inference scheduler was closed")
        for sequence in leftovers:
            self._finish(sequence, "cancelled", closed)
        with self.engine.lock:
            while self._active:
                self._remove_row(len(self._active) - 1, "cancelled", closed)

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self._waiting if s.cancelled.is_set()]:
            self._waiting.remove(sequence)
            self._finish(sequence, "cancelled")
        for row in range(len(self._active) - 1, -1, -1):
            if self._active[row].cancelled.is_set():
                self._remove_row(row, "cancelled")

    def _admit_one(self) -> None:
        if not self._waiting or len(self._active) >= self.max_batch_size:
            return
        sequence = self._waiting[0]
        request = sequence.request
        if self._active and self._active[0].request.base_id != request.base_id:
            return  # drain the current base's batch first (first come, first served)
        self._waiting.popleft()
        try:
            sequence.base = self.engine.acquire(request.base_id, request.adapter_id)
        except Exception as exc:
            self._finish(sequence, "error", exc)
            return
        base = sequence.base
        try:
            prompt = self.engine.encode_prompt(base, request)
            sequence.prompt_len = len(prompt)
            sequence.stream = TextStream(
                base.loaded.tokenizer, prompt, stop=request.stop,
                eos_token_ids=base.eos_token_ids, ignore_eos=request.ignore_eos,
            )  # fmt: skip
            params = SamplingParams(
                request.temperature, request.top_p, request.top_k,
                request.repetition_penalty, request.seed,
            )  # fmt: skip
            logits = base.runner.prefill(prompt, request.adapter_id)
            sequence.sampler = RowSampler(params, prompt, logits.shape[-1], logits.device)
            token = choose_tokens(logits[None], [sequence.sampler])[0]
        except Exception as exc:
            if base.runner.rows > len(self._active):  # prefill succeeded, sampling did not
                base.runner.remove_row(base.runner.rows - 1)
            self._release(sequence)
            self._finish(sequence, "error", exc)
            return
        self.stats.prefills += 1
        self._active.append(sequence)
        if self._accept(sequence, token):
            self._remove_row(len(self._active) - 1)

    def _decode_step(self) -> None:
        runner = self._active[0].base.runner  # type: ignore[union-attr]
        try:
            logits = runner.decode([s.last_token for s in self._active])
        except Exception as exc:
            log.exception("decode step failed for %d rows", len(self._active))
            self._fail_active(exc)
            return
        self.stats.decode_steps += 1
        self.stats.batch_sizes[len(self._active)] += 1
        if len({s.request.adapter_id for s in self._active}) > 1:
            self.stats.mixed_adapter_steps += 1
        samplers: list[RowSampler] = [s.sampler for s in self._active]  # type: ignore[misc]
        try:
            tokens: list[int] | None = choose_tokens(logits, samplers)
        except Exception:
            tokens = None  # retry row by row below, so one bad row fails alone
        finished: list[tuple[int, FinishReason | None, Exception | None]] = []
        for row, sequence in enumerate(self._active):
            try:
                if tokens is None:
                    token = choose_tokens(logits[row : row + 1], samplers[row : row + 1])[0]
                else:
                    token = tokens[row]
                done = self._accept(sequence, token)
            except Exception as exc:
                finished.append((row, "error", exc))
                continue
            if done:
                finished.append((row, None, None))
        for row, reason, error in reversed(finished):
            self._remove_row(row, reason, error)

    def _accept(self, sequence: _Sequence, token: int) -> bool:
        """Stream one sampled token; True when the sequence is complete (DoneEvent sent)."""
        assert sequence.stream is not None and sequence.base is not None
        now = time.perf_counter()
        if sequence.first_token_at is None:
            sequence.first_token_at = now
        sequence.generated += 1
        sequence.last_token = token
        sequence.pending_ids.append(token)
        update = sequence.stream.push(token)
        if update.text:
            self._emit(sequence, update.text)
        if update.finished:
            self._finish(sequence, "stop")
            return True
        fed = sequence.prompt_len + sequence.generated - 1  # positions in the cache
        limit = sequence.base.runner.max_length
        if sequence.generated >= sequence.request.max_new_tokens or fed >= limit:
            self._finish(sequence, "length")
            return True
        return False

    def _emit(self, sequence: _Sequence, text: str) -> None:
        sequence.events.put(TokenEvent(text, tuple(sequence.pending_ids)))
        sequence.pending_ids = []

    def _remove_row(
        self, row: int, reason: FinishReason | None = None, error: Exception | None = None
    ) -> None:
        """Free a row (mirroring the runner's swap), finishing its sequence if `reason`."""
        sequence = self._active[row]
        try:
            sequence.base.runner.remove_row(row)  # type: ignore[union-attr]
        finally:
            last = self._active.pop()
            if row < len(self._active):
                self._active[row] = last
            self._release(sequence)
            if reason is not None:
                self._finish(sequence, reason, error)

    def _release(self, sequence: _Sequence) -> None:
        if sequence.base is not None:
            self.engine.release(sequence.request.base_id, sequence.request.adapter_id)
            sequence.base = None

    def _fail_active(self, exc: Exception) -> None:
        runners = {id(s.base.runner): s.base.runner for s in self._active if s.base is not None}
        for sequence in self._active:
            self._release(sequence)
            self._finish(sequence, "error", exc)
        self._active = []
        for runner in runners.values():
            runner.clear()

    def _finish(
        self, sequence: _Sequence, reason: FinishReason, error: Exception | None = None
    ) -> None:
        if reason in ("length", "cancelled") and sequence.stream is not None:
            tail = sequence.stream.finish()
            if tail or sequence.pending_ids:
                self._emit(sequence, tail)
        elif sequence.pending_ids:
            self._emit(sequence, "")  # every sampled id is reported exactly once
        done_at = time.perf_counter()
        first = sequence.first_token_at
        rate = 0.0
        if first is not None and sequence.generated > 1 and done_at > first:
            rate = (sequence.generated - 1) / (done_at - first)
        sequence.events.put(
            DoneEvent(
                finish_reason=reason,
                prompt_tokens=sequence.prompt_len,
                completion_tokens=sequence.generated,
                time_to_first_token_s=None if first is None else first - sequence.submitted,
                tokens_per_s=rate,
                error=error,
            )
        )
