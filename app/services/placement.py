"""Where a training job can run: the queue its needs fit, and which workers consume it.

A run with one process goes to `train`, which every training worker consumes (as always). A run
with N > 1 processes (torchrun, one per GPU) needs one worker with N slots: a worker's slots are
its visible GPUs, or on a CPU machine TUNELAB_TRAIN_PROCESSES (CPU runs with several processes
exist mainly to test the distributed path). Such a run goes to `train.cuda<N>` or `train.cpu<N>`,
and a worker with S slots on device D consumes `train.D2` … `train.DS` besides `train`, so only
workers that fit ever see it. The web reads the workers' heartbeats (their queues and slots) to
pick the queue, to show on the form which workers fit, and to refuse, with the reason, a run no
worker could take instead of letting it wait forever.

No torch here: the web imports this, and so do workers (their extra queues, the reconciler).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.errors import FieldError, InvalidInput
from app.queue import Queue

DEVICE_ORDER = ("cuda", "cpu")  # a run that fits both goes to the GPUs


def group_queue(device: str, processes: int) -> str:
    """The queue of a run with `processes` > 1 on `device` ("cuda" or "cpu")."""
    return f"{Queue.TRAIN.value}.{device}{processes}"


def worker_queues(device: str, slots: int) -> list[str]:
    """The multi-process training queues a worker with `slots` on `device` consumes."""
    return [group_queue(device, n) for n in range(2, slots + 1)]


def worker_slots(worker: dict[str, Any]) -> int:
    """Processes one run may use on this worker (its heartbeat's `slots`; 1 for old workers)."""
    return max(1, int(worker.get("slots") or 1))


@dataclass(frozen=True)
class Placement:
    queue: str | None  # None: no running worker can take the run
    fits: list[dict[str, Any]] = field(default_factory=list)  # the workers that could run it
    largest: int = 0  # the most slots any training worker has (for the message)

    @property
    def labels(self) -> list[str]:
        """The fitting workers as the form names them: `name (2 × GPU)`."""
        return [worker_label(w) for w in self.fits]


def worker_label(worker: dict[str, Any]) -> str:
    device = "GPU" if worker.get("accelerator") == "cuda" else "CPU"
    return f"{worker.get('hostname', '?')} ({worker_slots(worker)} × {device})"


def training_workers(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [w for w in workers if Queue.TRAIN.value in w.get("queues", [])]


def place(processes: int, workers: list[dict[str, Any]]) -> Placement:
    """The queue for a run of `processes` among the alive `workers` (heartbeats)."""
    trainers = training_workers(workers)
    largest = max((worker_slots(w) for w in trainers), default=0)
    if processes <= 1:
        # Any training worker; with none alive the run waits in `train` for the first one, as
        # a fresh install's first job does while its worker starts.
        return Placement(Queue.TRAIN.value, trainers, largest)
    for device in DEVICE_ORDER:
        queue = group_queue(device, processes)
        fits = [w for w in trainers if queue in w.get("queues", [])]
        if fits:
            return Placement(queue, fits, largest)
    return Placement(None, [], largest)


def require_placement(processes: int, workers: list[dict[str, Any]]) -> str:
    """The queue for the run, or InvalidInput on `processes` saying what is missing."""
    placement = place(processes, workers)
    if placement.queue is not None:
        return placement.queue
    if placement.largest == 0:
        raise InvalidInput([FieldError("processes", "errors.no_training_worker", {"n": processes})])
    raise InvalidInput(
        [
            FieldError(
                "processes",
                "errors.no_worker_fits",
                {"n": processes, "largest": placement.largest},
            )
        ]
    )
