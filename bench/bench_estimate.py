"""Calibration of the time estimate: training tokens/s per probe GFLOP/s, measured together.

Runs workers.training.train() on the Zhangjiajie demo set with the quick preset (SmolLM2-135M,
batch 4, max length 512, one epoch, no gradient checkpointing unless --checkpointing), times
the throughput probe (workers/training/probe.py) as a training worker does (three measurements:
at the start and twice at the end; the best is what a worker publishes), and times one probe
pass between every two optimizer steps, so that each step's speed is set against the probe of
the same moment: shared machines change speed from one second to the next.

Reports tokens/s per GFLOP/s over the steps (Σ tokens ÷ Σ step seconds × probe of the moment:
another process slowing both leaves it unchanged), the evaluation's cost per token, the start-up
time, and, for a whole run, app.services.estimates' estimate (with the constant in code and with
the one just measured) against the measured time. docs/benchmarks.md derives the constant.

    .venv/bin/python bench/bench_estimate.py [--steps N] [--checkpointing] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEMO = ROOT / "examples" / "zhangjiajie" / "train.json"
MODEL = "smollm2-135m-instruct"
QUIET = 0.8  # a probe within 80 % of the run's best counts as undisturbed


def prepare(work: Path, data_dir: Path) -> Path:
    """Normalize the demo set as an upload would, and convert the GGUF into the model cache
    outside the measured run (a worker converts it once, on its first job)."""
    from app.datasets.validate import validate_file

    normalized = work / "train.jsonl"
    validate_file(DEMO, normalized, work / "dropped.jsonl")
    code = f"from workers.ml.loading import load_model; load_model({MODEL!r}, data_dir={str(data_dir)!r})"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)
    return normalized


def dataset_row(normalized: Path, data_dir: Path, max_length: int) -> Any:
    """An unsaved Dataset carrying the statistics the analyze task would store."""
    from app.models import Dataset
    from workers.ml.dataset_stats import token_stats
    from workers.ml.tokenizer import load_tokenizer

    stats = token_stats(
        load_tokenizer(MODEL, data_dir=data_dir), normalized, template=None, max_length=max_length
    )
    return Dataset(row_count=stats["rows"], stats_status="ready", stats=stats)


class ProbingReporter:
    """Records every event and times one probe pass after each step (between two steps)."""

    def __init__(self, probe: Any) -> None:
        self.probe = probe
        self.events: list[dict[str, Any]] = []
        self.marks: list[float] = []  # perf_counter at each metrics() call
        self.probes: list[float] = []  # GFLOP/s after each step
        self.probe_seconds: list[float] = []
        self.info: dict[str, Any] = {}

    def start(self, total_steps: int, info: dict[str, Any]) -> None:
        self.info = info
        self.probes.append(self.probe.rate() / 1e9)  # right before step 1

    def metrics(self, event: dict[str, Any]) -> None:
        self.marks.append(time.perf_counter())
        self.events.append(event)
        began = time.perf_counter()
        self.probes.append(self.probe.rate() / 1e9)
        self.probe_seconds.append(time.perf_counter() - began)
        print(
            f"step {event['step']}/{event['total_steps']} {event['tokens_per_s']:.1f} tokens/s, "
            f"probe {self.probes[-2]:.1f} -> {self.probes[-1]:.1f} GFLOP/s",
            flush=True,
        )

    def log(self, message: str) -> None:
        print(message, flush=True)

    def checkpoint(self, path: Any) -> None:
        pass

    def end(self, result: Any) -> None:
        pass


def run(args: argparse.Namespace, normalized: Path, work: Path) -> dict[str, Any]:
    import torch

    from app.schemas.training import PRESETS, TrainingConfig
    from workers.training.loop import train
    from workers.training.probe import Probe, measure

    config = TrainingConfig(**{**PRESETS["quick"], "gradient_checkpointing": args.checkpointing})
    if args.steps:  # a partial run still evaluates once, at its last step
        config = config.model_copy(update={"eval_every_steps": args.steps})
    figures = [measure()]  # a training worker measures at start, and twice more later
    print(f"probe at start: {json.dumps(figures[0].as_dict())}", flush=True)
    reporter = ProbingReporter(Probe())

    def should_stop() -> str | None:
        return "stop" if args.steps and len(reporter.events) >= args.steps else None

    result = train(config, MODEL, args.data_dir, normalized, work / "run", reporter, should_stop)
    figures.append(measure())
    print(f"probe at the end: {json.dumps(figures[-1].as_dict())}", flush=True)
    figures.append(measure())
    # A worker publishes the best of its three measurements (workers/heartbeat.py).
    return {
        "config": config,
        "published": max(figures, key=lambda t: t.gflops),
        "figures": [t.gflops for t in figures],
        "reporter": reporter,
        "result": result,
        "threads": torch.get_num_threads(),
    }


def step_table(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step: tokens, seconds, and the probe around it (mean of the passes before/after)."""
    rep: ProbingReporter = out["reporter"]
    rows, seen = [], 0
    for i, event in enumerate(rep.events):
        tokens, seen = event["tokens_seen"] - seen, event["tokens_seen"]
        probe = (rep.probes[i] + rep.probes[i + 1]) / 2
        rows.append(
            {
                "step": event["step"],
                "tokens": tokens,
                "seconds": tokens / event["tokens_per_s"],
                "probe": probe,
                "eval": event["eval_loss"] is not None,
                "elapsed": event["elapsed_s"],
            }
        )
    return rows


def report(out: dict[str, Any], dataset: Any, args: argparse.Namespace) -> None:
    from app.services import estimates

    rep: ProbingReporter = out["reporter"]
    rows = step_table(out)
    best = max(rep.probes)
    print(f"{'step':>4} {'tokens':>7} {'tokens/s':>9} {'probe GFLOP/s':>14} {'ratio':>8}")
    for r in rows:
        rate = r["tokens"] / r["seconds"]
        print(
            f"{r['step']:>4} {r['tokens']:>7} {rate:>9.1f} {r['probe']:>14.1f} "
            f"{rate / r['probe']:>8.4f}"
        )
    # Each step's seconds times the probe of that moment is the step's work in probe units:
    # another process slowing both down changes neither the product nor the ratio.
    ratio = sum(r["tokens"] for r in rows) / sum(r["seconds"] * r["probe"] for r in rows)
    # The estimate divides by the figure a worker publishes (the best of three), not by the
    # typical probe of the steps: scale the ratio by the one over the other.
    typical = sum(r["seconds"] * r["probe"] for r in rows) / sum(r["seconds"] for r in rows)
    constant = ratio * typical / out["published"].gflops
    quiet = [r for r in rows if r["probe"] >= QUIET * best]
    print(
        f"\nprobe measured {out['figures']} GFLOP/s ({out['published'].dtype}, "
        f"{out['published'].threads} threads); published as a worker does (the best): "
        f"{out['published'].gflops}; best single pass of the run "
        f"{best:.1f}; load average now {os.getloadavg()[0]:.2f}"
    )
    print(
        f"tokens/s per GFLOP/s over all {len(rows)} steps: {ratio:.4f} (median of the per-step "
        f"ratios {statistics.median(r['tokens'] / r['seconds'] / r['probe'] for r in rows):.4f});"
        f" typical probe {typical:.1f}: per published GFLOP/s {constant:.4f}"
    )
    if quiet:
        quiet_rate = sum(r["tokens"] for r in quiet) / sum(r["seconds"] for r in quiet)
        print(
            f"the {len(quiet)} quiet steps (probe >= {QUIET:.0%} of the best): "
            f"{quiet_rate:.1f} tokens/s"
        )
    print(
        f"gradient checkpointing {out['config'].gradient_checkpointing}, precision "
        f"{rep.info.get('precision')}, threads {out['threads']}"
    )

    # Evaluation and start-up, from the gaps between metrics() calls.
    val_tokens = rep.info["data"]["val"]["tokens"]
    for i, r in enumerate(rows):
        if r["eval"] and i:
            gap = r["elapsed"] - rows[i - 1]["elapsed"] - rep.probe_seconds[i - 1]
            eval_s = gap - r["seconds"]
            cost = ratio * eval_s * r["probe"] / val_tokens
            print(
                f"evaluation after step {r['step']}: {val_tokens} tokens in {eval_s:.1f} s; "
                f"cost per token vs a training token, probe-normalised: {cost:.2f}"
            )
    print(
        f"start-up (load, tokenize, set up) before step 1: "
        f"{rows[0]['elapsed'] - rows[0]['seconds']:.1f} s"
    )

    result = out["result"]
    print(
        f"train() returned after {result.elapsed_s:.1f} s ({result.steps} steps, "
        f"{result.tokens_seen} tokens); probe passes inside it took {sum(rep.probe_seconds):.1f} s"
    )
    if args.steps:
        return
    actual = result.elapsed_s - sum(rep.probe_seconds)
    published = out["published"].as_dict()
    worker = {"hostname": "this machine", "queues": ["train"], "accelerator": "cpu"}
    for label, value in (
        ("in code", estimates.TOKENS_PER_S_PER_GFLOPS),
        ("measured now", constant),
    ):
        estimates.TOKENS_PER_S_PER_GFLOPS = value
        for name, gflops in (("published probe", published["gflops"]), ("best pass", best)):
            worker["throughput"] = {**published, "gflops": gflops}
            est = estimates.estimate(out["config"], dataset, None, [worker])
            assert est.seconds is not None
            print(
                f"estimate (constant {label} {value:.4f}, {name} {gflops:.1f}): "
                f"{est.seconds / 60:.1f} min for {est.tokens} tokens; measured "
                f"{actual / 60:.1f} min: ratio actual/estimate {actual / est.seconds:.2f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0, help="stop after N steps (0: whole run)")
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on")
    parser.add_argument("--data-dir", type=Path, default=None, help="model cache (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunelab-bench-estimate-"))
    args.data_dir = args.data_dir or work / "data"
    try:
        normalized = prepare(work, args.data_dir)
        dataset = dataset_row(normalized, args.data_dir, 512)
        print(
            f"{dataset.row_count} rows; {dataset.stats['over_max_length']} over 512 tokens; "
            f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        report(run(args, normalized, work), dataset, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
