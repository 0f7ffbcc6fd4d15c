"""Command line: run train() in the foreground with progress printed to stdout.

    python -m workers.training.cli CONFIG.json DATA.jsonl OUT/ \\
        [--base-model smollm2-135m-instruct] [--data-dir DIR] [--val VAL.jsonl] \\
        [--resume OUT/checkpoints/step-N] [--init-adapter ADAPTER/] [--device cpu|cuda]

CONFIG.json holds TrainingConfig fields (`{}` for the defaults). Ctrl-C once stops and saves the
adapter; twice cancels (the last checkpoint stays).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from app.schemas.training import TrainingConfig
from workers.ml.errors import ModelLoadError
from workers.training.errors import TrainingError
from workers.training.launch import train_with_torchrun
from workers.training.loop import train
from workers.training.result import TrainResult


def _say(line: str, *, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)  # noqa: T201 (a CLI)


class StdoutReporter:
    """One line per event; metrics as a compact progress line."""

    def start(self, total_steps: int, info: dict[str, Any]) -> None:
        _say(f"training {total_steps} steps: {json.dumps(info, default=str)}")

    def metrics(self, event: dict[str, Any]) -> None:
        eval_part = "" if event["eval_loss"] is None else f" eval {event['eval_loss']:.4f}"
        _say(
            f"step {event['step']}/{event['total_steps']} epoch {event['epoch']:.2f} "
            f"loss {event['loss']:.4f}{eval_part} lr {event['lr']:.2e} "
            f"grad {event['grad_norm']:.3f} {event['tokens_per_s']:.0f} tok/s "
            f"elapsed {event['elapsed_s']:.0f}s eta {event['eta_s']:.0f}s"
        )

    def log(self, message: str) -> None:
        _say(message)

    def checkpoint(self, path: Path) -> None:
        pass  # "checkpoint saved: ..." is logged already

    def end(self, result: TrainResult) -> None:
        _say(json.dumps(result.as_dict(), indent=1, default=str))


class InterruptToStop:
    """should_stop() backed by SIGINT: first Ctrl-C asks "stop", the second "cancel"."""

    def __init__(self) -> None:
        self.request: str | None = None
        try:
            signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C keeps its default meaning
            pass

    def _handle(self, signum: int, frame: object) -> None:
        self.request = "cancel" if self.request else "stop"
        _say(f"{self.request} requested; finishing the current step")

    def __call__(self) -> str | None:
        return self.request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.training.cli", description=__doc__)
    parser.add_argument("config", type=Path, help="TrainingConfig as JSON")
    parser.add_argument("data", type=Path, help='normalized JSONL ({"messages": [...]} rows)')
    parser.add_argument("out", type=Path, help="output folder (adapter/, checkpoints/)")
    parser.add_argument("--base-model", default="smollm2-135m-instruct")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("TUNELAB_DATA_DIR", "data"))
    )
    parser.add_argument("--val", type=Path, default=None, help="validation JSONL")
    parser.add_argument("--resume", type=Path, default=None, help="checkpoint folder")
    parser.add_argument(
        "--init-adapter", type=Path, default=None, help="PEFT adapter folder to start from"
    )
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    config = TrainingConfig.model_validate_json(args.config.read_text(encoding="utf-8"))
    # Several processes: the same loop in each, through torchrun (workers/training/launch.py).
    run = train_with_torchrun if config.processes > 1 else train
    try:
        result = run(
            config,
            args.base_model,
            args.data_dir,
            args.data,
            args.out,
            StdoutReporter(),
            InterruptToStop(),
            val_path=args.val,
            resume_from=args.resume,
            init_adapter=args.init_adapter,
            device=args.device,
        )
    except (TrainingError, ModelLoadError, ValueError) as exc:
        _say(f"error: {exc}", err=True)
        return 2
    return 0 if result.status != "cancelled" else 1


if __name__ == "__main__":
    sys.exit(main())
