"""Continuous batching: one loop thread serves every submitted request of an InferenceEngine.

Each loop iteration (under engine.lock, in inference mode):
1. drops cancelled requests, freeing their rows;
2. if no prompt is being prefilled, admits the oldest waiting request: loads or attaches what it
   needs (pinning it), renders its prompt and stages it in the runner;
3. prefills one chunk (prefill_chunk tokens) of the staged prompt; when the prompt is complete
   the request samples its first token and joins the batch;
4. runs one decode step for all active rows in a single forward pass, whatever adapter each row
   uses, samples each row with its own settings and streams its text to its handle.
A batch holds one base model. Admission is first come, first served: when the oldest waiting
request needs another base, admission pauses until the batch drains, then the engine switches
bases, so no request starves and no base is evicted under an active sequence.
"""

import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

import torch

from workers.inference.decoding import TextStream
from workers.inference.engine import InferenceEngine
from workers.inference.errors import EngineClosed
from workers.inference.events import FinishReason, GenerationRequest
from workers.inference.handle import GenerationHandle, SequenceState
from workers.inference.sampling import RowSampler, SamplingParams, choose_tokens
from workers.inference.threads import LoopThreads

log = logging.getLogger(__name__)


@dataclass
class SchedulerStats:
    """Counters for tests and monitoring; read them once the requests of interest finished."""

    decode_steps: int = 0
    prefill_chunks: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)  # rows per decode step
    mixed_adapter_steps: int = 0  # decode steps whose rows used more than one adapter (or none)
    threads: int = 0  # intra-op threads the loop thread uses now
    thread_switches: int = 0


class Scheduler:
    """Thread-safe front of the engine: submit() from any thread, one loop thread generates.

    Contract: every submitted request MUST end with exactly one DoneEvent, whatever happens to
    other requests; a failure of one request (bad template, prompt too long, broken adapter)
    MUST NOT affect the others; cancel() MUST free the request's row at the next loop step;
    every sampled token id MUST appear in exactly one TokenEvent.
    """

    def __init__(
        self,
        engine: InferenceEngine,
        *,
        max_batch_size: int | None = None,
        prefill_chunk: int = 256,
        threads: int | Literal["auto"] | None = None,
    ) -> None:
        """threads: intra-op threads for the loop thread.

        None leaves torch's setting alone. An int fixes it; "auto" lets ThreadTuner pick all
        usable CPUs or 1 by timing decode steps (threads.py). Either SHOULD only be used in a
        process dedicated to inference: torch.set_num_threads also becomes the count of
        threads the process creates later (measured with the OpenMP backend). The loop
        restores the previous count when it stops.
        """
        self.engine = engine
        self._threads = LoopThreads(threads)
        self.max_batch_size = max_batch_size or engine.max_batch_size
        self.prefill_chunk = prefill_chunk
        self.stats = SchedulerStats()
        self._wake = threading.Condition()
        self._inbox: list[SequenceState] = []
        self._waiting: deque[SequenceState] = deque()
        self._staged: SequenceState | None = None  # being prefilled
        self._active: list[SequenceState] = []  # index == runner row
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
        """Stop the loop; unfinished requests end with DoneEvent(cancelled, EngineClosed)."""
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
                raise EngineClosed("the inference scheduler is closed")
            self._inbox.append(state)
            self._wake.notify_all()
        return GenerationHandle(state, self._notify)

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- the loop thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        self._threads.start()
        self.stats.threads = self._threads.current
        try:
            self._serve()
        finally:
            self._threads.stop()
            self._shutdown()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not (self._closing or self._inbox or self._waiting or self._busy()):
                    self._wake.wait()
                if self._closing:
                    break
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            try:
                with self.engine.lock, torch.inference_mode():
                    self._drop_cancelled()
                    if self._staged is None:
                        self._admit()
                    if self._staged is not None:
                        self._prefill_chunk()
                    if self._active:
                        self._decode_step()
            except Exception as exc:  # a bug must never leave requests hanging
                log.exception("inference loop step failed")
                self._fail_batch(exc)

    def _busy(self) -> bool:
        return bool(self._active) or self._staged is not None

    def _shutdown(self) -> None:
        with self._wake:
            leftovers = [*self._inbox, *self._waiting]
            self._inbox.clear()
            self._waiting.clear()
        closed = EngineClosed("the inference scheduler was closed")
        with self.engine.lock:
            for state in leftovers:
                state.finish("cancelled", closed)
            self._fail_batch(closed, reason="cancelled")

    def _drop_cancelled(self) -> None:
        for state in [s for s in self._waiting if s.cancelled.is_set()]:
            self._waiting.remove(state)
            state.finish("cancelled")
        staged = self._staged
        if staged is not None and staged.cancelled.is_set():
            staged.base.runner.abort_prefill()  # type: ignore[union-attr]
            self._staged = None
            self._release(staged)
            staged.finish("cancelled")
        for row in range(len(self._active) - 1, -1, -1):
            if self._active[row].cancelled.is_set():
                self._remove_row(row, "cancelled")

    def _admit(self) -> None:
        if not self._waiting or len(self._active) >= self.max_batch_size:
            return
        state = self._waiting[0]
        request = state.request
        if self._active and self._active[0].request.base_id != request.base_id:
            return  # drain the current base's batch first (first come, first served)
        self._waiting.popleft()
        try:
            state.base = self.engine.acquire(request.base_id, request.adapter_id)
        except Exception as exc:
            state.finish("error", exc)
            return
        try:
            prompt = self.engine.encode_prompt(state.base, request)
            state.prompt_len = len(prompt)
            state.stream = TextStream(
                state.base.loaded.tokenizer, prompt, stop=request.stop,
                eos_token_ids=state.base.eos_token_ids, ignore_eos=request.ignore_eos,
            )  # fmt: skip
            params = SamplingParams(
                request.temperature, request.top_p, request.top_k,
                request.repetition_penalty, request.seed,
            )  # fmt: skip
            state.sampler = RowSampler(params, prompt, state.base.vocab_size, self.engine.device)
            state.base.runner.begin(prompt, request.adapter_id)
        except Exception as exc:
            self._release(state)
            state.finish("error", exc)
            return
        self._staged = state

    def _prefill_chunk(self) -> None:
        state = self._staged
        assert state is not None and state.base is not None and state.sampler is not None
        runner = state.base.runner
        try:
            logits = runner.prefill_step(self.prefill_chunk)
            self.stats.prefill_chunks += 1
            if logits is None:
                return
            self._staged = None
            token = choose_tokens(logits[None], [state.sampler])[0]
        except Exception as exc:
            if self._staged is None:  # the prompt went in, sampling failed: drop the new row
                runner.remove_row(runner.rows - 1)
            runner.abort_prefill()
            self._staged = None
            self._release(state)
            state.finish("error", exc)
            return
        self._active.append(state)
        if state.accept(token, state.base.context_length):  # type: ignore[union-attr]
            self._remove_row(len(self._active) - 1)

    def _decode_step(self) -> None:
        runner = self._active[0].base.runner  # type: ignore[union-attr]
        threads = self.stats.threads = self._threads.before_step()
        started = time.perf_counter()
        logits = runner.decode([s.last_token for s in self._active])
        self._threads.after_step(threads, len(self._active), time.perf_counter() - started)
        self.stats.thread_switches = self._threads.switches
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
        for row, state in enumerate(self._active):
            try:
                if tokens is None:
                    token = choose_tokens(logits[row : row + 1], samplers[row : row + 1])[0]
                else:
                    token = tokens[row]
                if state.accept(token, state.base.context_length):  # type: ignore[union-attr]
                    finished.append((row, None, None))
            except Exception as exc:
                finished.append((row, "error", exc))
        for row, reason, error in reversed(finished):
            self._remove_row(row, reason, error)

    def _remove_row(
        self, row: int, reason: FinishReason | None = None, error: Exception | None = None
    ) -> None:
        """Free a row (mirroring the runner's swap), finishing its sequence if `reason`."""
        state = self._active[row]
        try:
            state.base.runner.remove_row(row)  # type: ignore[union-attr]
        finally:
            last = self._active.pop()
            if row < len(self._active):
                self._active[row] = last
            self._release(state)
            if reason is not None:
                state.finish(reason, error)

    def _release(self, state: SequenceState) -> None:
        if state.base is not None:
            self.engine.release(state.request.base_id, state.request.adapter_id)
            state.base = None

    def _fail_batch(self, exc: Exception, reason: FinishReason = "error") -> None:
        """End the staged and every active request (after a failed step or at shutdown)."""
        states = [*self._active, *([self._staged] if self._staged is not None else [])]
        runners = {id(s.base.runner): s.base.runner for s in states if s.base is not None}
        for state in states:
            self._release(state)
            state.finish(reason, exc)
        self._active, self._staged = [], None
        for runner in runners.values():
            runner.clear()
