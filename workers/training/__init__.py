"""Tunelab's LoRA training core: pure ML, no queue, database or web imports.

    from workers.training import train, TrainResult, ListReporter
    result = train(config, "smollm2-135m-instruct", data_dir, train_jsonl, out_dir,
                   reporter, should_stop)

Modules: loop (train), data (tokenized examples, length-grouped batches), loss (selective
cross-entropy), step (one optimizer step, evaluation), build (LoRA model, optimizer, schedule),
precision (device/dtype choices, QLoRA), checkpoint, best (keep_best, early stopping), reporter
(the progress contract), errors, memory, result, cli; for one run in several processes, launch
(train_with_torchrun) and group (DDP, sharding, stop agreement); torchrun's entry,
workers/train_rank.py, talks to Redis for a job's rank 0, so it lives outside this package.
"""

from workers.training.errors import EmptyDataset, TrainingError, TrainingOOM
from workers.training.loop import train
from workers.training.reporter import ListReporter, NullReporter, Reporter, never_stop
from workers.training.result import TrainResult

__all__ = [
    "EmptyDataset",
    "ListReporter",
    "NullReporter",
    "Reporter",
    "TrainResult",
    "TrainingError",
    "TrainingOOM",
    "never_stop",
    "train",
]
