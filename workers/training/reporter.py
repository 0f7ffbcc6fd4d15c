"""How train() tells the outside world what it is doing, and how it is asked to stop.

train() is pure ML: it never talks to a queue, a database or a socket. Whoever runs it (a Celery
task, the CLI, a test) passes a Reporter that forwards events wherever they must go, and a
`should_stop` callable that it polls.

Reporter contract
-----------------
- `start(total_steps, info)` MUST be called exactly once, after the data and model are ready and
  before the first optimizer step. `info` is a JSON-able dict (device, precision, example counts,
  padding fraction, trainable parameters, resumed_from_step, ...).
- `metrics(event)` MUST be called exactly once per optimizer step, in step order, with a
  JSON-able dict holding at least METRIC_KEYS:
  step (1-based, global across resumes), total_steps, epoch (float, fraction of epochs done),
  loss (mean loss per trainable token over the step), eval_loss (None unless the validation
  set was evaluated at this step), lr (the rate used for this step), grad_norm (before
  clipping), tokens_per_s (non-pad tokens, context and trainable, per second of this step),
  elapsed_s (wall time of the whole run, earlier sessions included on resume), eta_s (remaining
  steps times the measured mean step time). Extra keys (tokens_seen) MAY be present.
- `log(message)` MAY be called any time with one human-readable line.
- `end(result)` MUST be called exactly once with the TrainResult when train() returns normally
  (completed, stopped or cancelled). When train() raises, `end` is NOT called: the exception is
  the result.
- Implementations SHOULD return quickly (they run on the training thread, between steps) and
  MUST NOT raise; an exception from a reporter aborts the run.

should_stop convention
----------------------
`should_stop()` is called after every optimizer step (after metrics and any checkpoint) and
returns None to continue, "stop" to stop now and save the adapter as it stands (plus a
checkpoint, so the run can be resumed), or "cancel" to stop at once, keep the last checkpoint
and save no final adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

StopRequest = Literal["stop", "cancel"] | None
ShouldStop = Callable[[], str | None]

METRIC_KEYS = (
    "step",
    "total_steps",
    "epoch",
    "loss",
    "eval_loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "elapsed_s",
    "eta_s",
)


class Reporter(Protocol):
    def start(self, total_steps: int, info: dict[str, Any]) -> None: ...

    def metrics(self, event: dict[str, Any]) -> None: ...

    def log(self, message: str) -> None: ...

    def checkpoint(self, path: Path) -> None:
        """A complete checkpoint was saved at `path` (where a resume would start)."""
        ...

    def end(self, result: Any) -> None: ...


def never_stop() -> str | None:
    return None


class NullReporter:
    """Discards everything."""

    def start(self, total_steps: int, info: dict[str, Any]) -> None:
        pass

    def metrics(self, event: dict[str, Any]) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def checkpoint(self, path: Path) -> None:
        pass

    def end(self, result: Any) -> None:
        pass


class ListReporter:
    """Records every call in order, for tests and benchmarks."""

    def __init__(self) -> None:
        self.total_steps: int | None = None
        self.info: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self.result: Any = None
        self.checkpoints: list[Path] = []
        self.calls: list[str] = []  # "start", "metrics", "log", "checkpoint", "end" in order

    def start(self, total_steps: int, info: dict[str, Any]) -> None:
        self.calls.append("start")
        self.total_steps, self.info = total_steps, dict(info)

    def metrics(self, event: dict[str, Any]) -> None:
        self.calls.append("metrics")
        self.events.append(dict(event))

    def log(self, message: str) -> None:
        self.calls.append("log")
        self.messages.append(message)

    def checkpoint(self, path: Path) -> None:
        self.calls.append("checkpoint")
        self.checkpoints.append(path)

    def end(self, result: Any) -> None:
        self.calls.append("end")
        self.result = result

    @property
    def losses(self) -> list[float]:
        return [e["loss"] for e in self.events]
