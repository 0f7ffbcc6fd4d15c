"""Choice of the engine loop's intra-op thread count, by timing its own decode steps.

A decode step is memory-bound: on the 2-core reference machine bf16 matmuls read ~1.3x faster
with 2 threads than with 1 when the machine is idle, but when another busy process (a training
job, another worker thread's OpenMP team) holds a core, every parallel region waits for a
descheduled thread and a step can get many times slower than with 1 thread. The best count
thus depends on what else runs, and changes. Measured caveat: with the OpenMP backend,
torch.set_num_threads in the loop thread leaves threads that already ran torch code alone but
becomes the count of threads created later, so the tuner is opt-in (Scheduler(threads="auto"))
for processes dedicated to inference.

ThreadTuner keeps the current count and, every `every` steps, tries the other candidate for
`window` steps; it switches when that was faster by `margin` on steps of the same batch size.
"""

import os
import statistics
from typing import Literal

import torch


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ThreadTuner:
    """Explore-then-commit between all usable CPUs and 1 thread; makes no torch calls itself."""

    def __init__(
        self, max_threads: int, *, every: int = 256, window: int = 8, margin: float = 0.1
    ) -> None:
        self.choices = (max_threads, 1) if max_threads > 1 else (1,)
        self.current = self.choices[0]
        self.every, self.window, self.margin = every, window, margin
        self.switches = 0
        self._steps = 0
        self._recent: list[tuple[int, float]] = []  # (rows, seconds) with the current count
        self._probe: list[tuple[int, float]] = []  # (rows, seconds) with the other count

    @property
    def _other(self) -> int:
        return self.choices[1] if self.current == self.choices[0] else self.choices[0]

    def threads_for_next_step(self) -> int:
        probing = len(self.choices) > 1 and self._steps >= self.every
        return self._other if probing else self.current

    def record(self, threads: int, rows: int, seconds: float) -> None:
        """Account one decode step that ran with `threads` threads on `rows` rows."""
        if threads == self.current:
            self._recent = [*self._recent[-(self.window - 1) :], (rows, seconds)]
            self._steps += 1
            return
        self._probe.append((rows, seconds))
        if len(self._probe) < self.window:
            return
        rows_now = self._probe[-1][0]
        tried = [s for r, s in self._probe if r == rows_now]
        kept = [s for r, s in self._recent if r == rows_now]
        if len(tried) >= self.window // 2 and len(kept) >= self.window // 2:
            if statistics.median(tried) < statistics.median(kept) * (1 - self.margin):
                self.current = threads
                self.switches += 1
                self._recent = list(self._probe)
        self._probe = []
        self._steps = 0


class LoopThreads:
    """The loop thread's intra-op thread count: left alone (None), fixed (int) or "auto".

    start() and stop() MUST be called on the loop thread, around its whole life; stop()
    restores the count that was in effect before start().
    """

    def __init__(self, setting: int | Literal["auto"] | None) -> None:
        self.setting = setting
        self.tuner: ThreadTuner | None = None
        self.current = 0
        self._previous = 0

    def start(self) -> None:
        self._previous = torch.get_num_threads()
        if self.setting == "auto":
            self.tuner = ThreadTuner(usable_cpus())
            torch.set_num_threads(self.tuner.current)
        elif self.setting is not None:
            torch.set_num_threads(self.setting)
        self.current = torch.get_num_threads()

    def before_step(self) -> int:
        """The count for the coming decode step (already applied)."""
        if self.tuner is not None:
            wanted = self.tuner.threads_for_next_step()
            if wanted != self.current:
                torch.set_num_threads(wanted)
                self.current = wanted
        return self.current

    def after_step(self, threads: int, rows: int, seconds: float) -> None:
        if self.tuner is not None:
            self.tuner.record(threads, rows, seconds)

    @property
    def switches(self) -> int:
        return self.tuner.switches if self.tuner is not None else 0

    def stop(self) -> None:
        if self.setting is not None and self._previous:
            torch.set_num_threads(self._previous)
