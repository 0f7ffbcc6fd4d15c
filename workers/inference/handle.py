"""Per-request state shared by the scheduler's loop thread and the request's consumer."""

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from workers.inference.decoding import TextStream
from workers.inference.engine import LoadedBase
from workers.inference.events import (
    DoneEvent,
    Event,
    FinishReason,
    GenerationRequest,
    TokenEvent,
)
from workers.inference.sampling import RowSampler


@dataclass(eq=False)
class SequenceState:
    """A request as the loop thread tracks it; only `events` and `cancelled` cross threads."""

    request: GenerationRequest
    events: "queue.SimpleQueue[Event]"
    submitted: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    base: LoadedBase | None = None  # set while the engine pins the base (and adapter)
    prompt_len: int = 0
    stream: TextStream | None = None
    sampler: RowSampler | None = None
    last_token: int = 0
    generated: int = 0
    pending_ids: list[int] = field(default_factory=list)  # sampled, not yet in an event
    first_token_at: float | None = None

    def accept(self, token: int, context_length: int) -> bool:
        """Stream one sampled token; True when the completion is over (DoneEvent sent)."""
        assert self.stream is not None
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.generated += 1
        self.last_token = token
        self.pending_ids.append(token)
        update = self.stream.push(token)
        if update.text:
            self._emit(update.text)
        if update.finished:
            self.finish("stop")
            return True
        cached = self.prompt_len + self.generated - 1  # the position the next step would use
        if self.generated >= self.request.max_new_tokens or cached >= context_length:
            self.finish("length")
            return True
        return False

    def _emit(self, text: str) -> None:
        self.events.put(TokenEvent(text, tuple(self.pending_ids)))
        self.pending_ids = []

    def finish(self, reason: FinishReason, error: Exception | None = None) -> None:
        """Send the remaining text (if the end was not a stop) and the DoneEvent."""
        if reason in ("length", "cancelled") and self.stream is not None:
            tail = self.stream.finish()
            if tail or self.pending_ids:
                self._emit(tail)
        elif self.pending_ids:
            self._emit("")  # every sampled id is reported exactly once
        done_at = time.perf_counter()
        first = self.first_token_at
        rate = 0.0
        if first is not None and self.generated > 1 and done_at > first:
            rate = (self.generated - 1) / (done_at - first)
        self.events.put(
            DoneEvent(
                finish_reason=reason,
                prompt_tokens=self.prompt_len,
                completion_tokens=self.generated,
                time_to_first_token_s=None if first is None else first - self.submitted,
                tokens_per_s=rate,
                error=error,
            )
        )


@dataclass(frozen=True)
class GenerationResult:
    text: str
    token_ids: tuple[int, ...]
    done: DoneEvent


class GenerationHandle:
    """A submitted request: iterate it for TokenEvents then one DoneEvent; cancel() any time.

    Consumers SHOULD either read events until the DoneEvent or call cancel(); an abandoned
    handle keeps generating until max_new_tokens.
    """

    def __init__(self, state: SequenceState, wake: Callable[[], None]) -> None:
        self._state = state
        self._wake = wake
        self.request_id = state.request.request_id

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events until the DoneEvent; raises queue.Empty if one takes longer than `timeout`."""
        while True:
            event = self._state.events.get(timeout=timeout)
            yield event
            if isinstance(event, DoneEvent):
                return

    def next_event(self, timeout: float | None = None) -> Event:
        """The next event; raises queue.Empty after `timeout` seconds without one, losing
        nothing (a consumer that polls something else between events calls this again)."""
        return self._state.events.get(timeout=timeout)

    def cancel(self) -> None:
        """Stop generating: the row is freed at the next step and DoneEvent(cancelled) sent."""
        self._state.cancelled.set()
        self._wake()

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
        raise AssertionError("unreachable: events() always ends with a DoneEvent")
