"""Benchmark: the inference engine vs. plain transformers generate() on a real model.

Measures, in one process and interleaved round by round (so a busy machine slows both sides
alike; the best round of each counts):
  baseline  plain fp32 model.generate(), greedy, one stream: tokens/s and time to first token
  single    the engine, one stream through an unmerged random LoRA (r=8, all linear layers)
  batch     the engine, 8 concurrent streams (4 adapter A, 4 adapter B), total tokens/s
Every stream generates exactly --new-tokens tokens (EOS ignored). PASS when single is at least
1.5x baseline and batch at least 3x single.

Threads: torch's OpenMP runtime (libgomp) gives every thread that runs torch ops its own team
of workers and, once more worker threads exist than CPUs, stops letting idle workers spin, so
every parallel region then pays a futex wake-up (measured: engine decode 45 instead of 63
tok/s while another thread's team lives). A Celery worker's pool threads only wait on the
engine, so the loop thread's team is alone there; the bench reproduces that by running the
baseline, the model loads and the adapter building on short-lived threads (a team dies with
its thread), and the baseline while no scheduler runs.

    .venv/bin/python bench/bench_infer_engine.py [--model smollm2-135m-instruct] [--rounds 3]
        [--data-dir DIR]   (a data dir whose model cache is ready skips the ~20 s conversion)
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.serving_common import FirstTokenClock, random_adapter  # noqa: E402
from workers.inference import GenerationRequest, InferenceEngine, Scheduler  # noqa: E402
from workers.ml.loading import load_model  # noqa: E402

QUESTION = "What is the capital of France? Answer briefly."
T = TypeVar("T")


def baseline(model: Any, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    ids = torch.tensor([prompt])
    clock = FirstTokenClock()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            streamer=clock,
        )
    wall = time.perf_counter() - start
    produced = out.shape[1] - len(prompt)
    return produced / wall, (clock.first or start) - start


def engine_run(scheduler: Scheduler, requests: list[GenerationRequest]) -> tuple[float, float]:
    """(total tokens/s over the wall time, mean time to first token) for concurrent requests."""
    start = time.perf_counter()
    handles = [scheduler.submit(r) for r in requests]
    results = [h.result(timeout=600) for h in handles]
    wall = time.perf_counter() - start
    for result in results:
        if result.done.finish_reason != "length":
            sys.exit(f"engine request failed: {result.done}")
    tokens = sum(r.done.completion_tokens for r in results)
    ttft = sum(r.done.time_to_first_token_s or 0.0 for r in results) / len(results)
    return tokens / wall, ttft


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    temp = Path(tempfile.mkdtemp(prefix="tunelab-infer-bench-"))
    data_dir = args.data_dir or temp
    try:
        return run(args, data_dir, temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on a short-lived thread, whose OpenMP team dies with it (see the docstring)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # re-raised on the calling thread
            box["error"] = exc

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def measure(args: argparse.Namespace, data_dir: Path, temp: Path) -> dict[str, Any]:
    engine = InferenceEngine(data_dir, memory_budget_bytes=4 << 30, device="cpu")

    def request(
        adapter: str | None, index: int = 0, tokens: int = args.new_tokens
    ) -> GenerationRequest:
        return GenerationRequest(
            f"{adapter}{index}", args.model, adapter, [{"role": "user", "content": QUESTION}],
            temperature=0.0, max_new_tokens=tokens, ignore_eos=True,
        )  # fmt: skip

    started = time.perf_counter()
    with Scheduler(engine) as scheduler:  # the loop thread loads (and converts) the base
        done = scheduler.submit(request(None, tokens=1)).result(timeout=600).done
    print(f"engine load: {time.perf_counter() - started:.1f} s, dtype {engine.dtype}")
    if done.finish_reason != "length":
        sys.exit(f"engine failed: {done}")
    reference = in_thread(
        lambda: load_model(args.model, data_dir=data_dir, device="cpu", dtype="float32").model
    )
    for name, seed in (("A", 1), ("B", 2)):
        engine.register_adapter(
            args.model, name, in_thread(random_adapter, reference, temp / name, seed)
        )
    prompt = engine.encode_prompt(engine.ensure_base(args.model), request("A"))
    print(f"prompt: {len(prompt)} tokens, {args.new_tokens} new tokens per stream")
    batch = [request("A" if i % 2 == 0 else "B", i) for i in range(8)]
    in_thread(baseline, reference, prompt, 8)  # warm-up
    results: dict[str, list[tuple[float, float]]] = {}
    for round_index in range(args.rounds):
        # The baseline runs while no scheduler runs, the engine while no baseline thread lives.
        results.setdefault("baseline", []).append(
            in_thread(baseline, reference, prompt, args.new_tokens)
        )
        with Scheduler(engine) as scheduler:
            engine_run(scheduler, [request("A"), request("B")])  # warm-up, attaches adapters
            for name, requests in (
                ("single", [request("A")]),
                ("no_lora", [request(None)]),
                ("batch", batch),
            ):
                results.setdefault(name, []).append(engine_run(scheduler, requests))
            stats = scheduler.stats
        line = ", ".join(f"{k} {v[-1][0]:.1f}" for k, v in results.items())
        print(f"round {round_index + 1} (tok/s): {line}")
    return {"results": results, "stats": stats}


def run(args: argparse.Namespace, data_dir: Path, temp: Path) -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    started = time.perf_counter()
    measured = measure(args, data_dir, temp)
    results, stats = measured["results"], measured["stats"]
    best = {k: (max(t for t, _ in v), min(f for _, f in v)) for k, v in results.items()}
    labels = {
        "baseline": "baseline fp32 generate, 1 stream",
        "single": "engine, 1 stream, LoRA A",
        "no_lora": "engine, 1 stream, no adapter",
        "batch": "engine, 8 streams (4 A + 4 B)",
    }
    print(f"\n{'best of ' + str(args.rounds) + ' rounds':34s} {'tok/s':>8s} {'TTFT ms':>8s}")
    for name, label in labels.items():
        print(f"{label:34s} {best[name][0]:8.1f} {best[name][1] * 1e3:8.0f}")
    lora_cost = 1 - best["single"][0] / best["no_lora"][0]
    print(f"unmerged LoRA cost: {lora_cost:.0%} of single-stream speed")
    print(f"last round: decode batch sizes {dict(stats.batch_sizes)}")
    print(f"last round: mixed-adapter decode steps {stats.mixed_adapter_steps}")
    print(f"loop threads {stats.threads}, load {os.getloadavg()}")
    single_ratio = best["single"][0] / best["baseline"][0]
    batch_ratio = best["batch"][0] / best["single"][0]
    checks = [
        ("engine single / baseline", single_ratio, 1.5),
        ("engine 8 streams / engine single", batch_ratio, 3.0),
    ]
    ok = True
    for label, ratio, target in checks:
        verdict = "PASS" if ratio >= target else "FAIL"
        ok &= ratio >= target
        print(f"{label:34s} {ratio:5.2f}x (target >= {target}x)  {verdict}")
    print(f"total bench time {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
