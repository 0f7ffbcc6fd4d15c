"""Benchmark: chat through the whole platform path against plain generate() in one process.

Starts `tunelab up` on a fresh data dir (embedded Redis, SQLite, real workers), registers a
random LoRA adapter (r=8, all linear layers) as version v1 of a SmolLM2 project, and measures
with the official openai client (HTTP → Celery → infer worker → Redis → SSE):
  baseline  plain fp32 model.generate() in this process, greedy, 128 new tokens
  platform  one streamed chat completion through v1 (unmerged adapter), 128 tokens
  8 chats   eight concurrent streams (4 through v1, 4 through the base model)
Rounds alternate baseline and platform, so machine noise hits both; the best round counts.
Targets: platform tokens/s >= 1.5x baseline, < 150 ms added to the first token, and 8 chats
>= 3x the platform's single stream.

    .venv/bin/python bench/bench_serving.py [--rounds 3] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import openai  # noqa: E402
import torch  # noqa: E402

from bench.serving_common import FirstTokenClock, random_adapter  # noqa: E402

MODEL = "smollm2-135m-instruct"
QUESTION = "Tell me about the Zhangjiajie National Forest Park and how to visit it."


def start_platform(data_dir: Path, port: int, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`tunelab up` on `data_dir`, its output to `log` (discarded without one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")}
    env["TUNELAB_DATA_DIR"] = str(data_dir)
    tunelab = Path(sys.executable).parent / "tunelab"
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [str(tunelab), "up", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    for _ in range(600):
        try:
            if "infer" in httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["queues"]:
                return proc
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise SystemExit("tunelab up did not start")


def register_version(base_url: str, data_dir: Path, adapter: Path) -> str:
    project = httpx.post(f"{base_url}/api/projects", json={"name": "bench"}, timeout=30).json()
    os.environ["TUNELAB_DATA_DIR"] = str(data_dir)
    from app.db import session_scope
    from app.models import ModelVersion

    with session_scope(f"sqlite:///{data_dir / 'tunelab.db'}") as session:
        session.add(
            ModelVersion(
                project_id=project["id"],
                version=1,
                adapter_path=str(adapter),
                base_model=MODEL,
                config={},
                dataset_sha256="0" * 64,
                dataset_name="random adapter",
                libraries={},
                metrics={},
                stopped_early=False,
            )
        )
    return project["slug"]


def baseline(loaded: Any, new_tokens: int) -> dict[str, float]:
    tokenizer, model = loaded.tokenizer, loaded.model
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    clock = FirstTokenClock()
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            ids,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            streamer=clock,
        )
    end = time.perf_counter()
    assert clock.first is not None
    return {"ttft_s": clock.first - start, "tokens_per_s": (new_tokens - 1) / (end - clock.first)}


def stream_once(client: openai.OpenAI, model: str, new_tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    first = last = None
    tokens = 0
    usage = None
    for chunk in client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=new_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            now = time.perf_counter()
            first = first or now
            last = now
            tokens += 1
    assert first is not None and last is not None and usage is not None
    completion = usage.completion_tokens
    return {
        "ttft_s": first - start,
        "tokens": completion,
        "tokens_per_s": (completion - 1) / max(last - first, 1e-9),
        "wall_s": last - start,
    }


def concurrent(client: openai.OpenAI, models: list[str], new_tokens: int) -> dict[str, Any]:
    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def run(model: str) -> None:
        result = stream_once(client, model, new_tokens)
        with lock:
            results.append(result)

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    rates = [r["tokens"] / r["wall_s"] for r in results]
    mean = sum(rates) / len(rates)
    return {
        "tokens": sum(r["tokens"] for r in results),
        "tokens_per_s": sum(r["tokens"] for r in results) / wall,
        "wall_s": wall,
        # Each stream's rate over the mean: how evenly the streams were served.
        "spread": (min(rates) / mean, max(rates) / mean),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    from workers.ml.loading import load_model

    data_dir = Path(tempfile.mkdtemp(prefix="tunelab-bench-serving-"))
    try:
        loaded = load_model(MODEL, data_dir=data_dir, dtype=torch.float32)  # also fills the cache
        adapter = random_adapter(loaded.model, data_dir / "bench-adapter")
        proc = start_platform(data_dir, args.port)
        base_url = f"http://127.0.0.1:{args.port}"
        try:
            slug = register_version(base_url, data_dir, adapter)
            client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", timeout=600)
            stream_once(client, f"{slug}:v1", 8)  # warm-up: the worker loads the model
            stream_once(client, f"{slug}:base", 8)
            base_rounds, platform_rounds = [], []
            for _ in range(args.rounds):
                base_rounds.append(baseline(loaded, args.new_tokens))
                platform_rounds.append(stream_once(client, f"{slug}:v1", args.new_tokens))
            models = [f"{slug}:v1"] * 4 + [f"{slug}:base"] * 4
            eight = max(
                (concurrent(client, models, args.new_tokens) for _ in range(2)),
                key=lambda r: r["tokens_per_s"],
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    best_base = max(base_rounds, key=lambda r: r["tokens_per_s"])
    best_platform = max(platform_rounds, key=lambda r: r["tokens_per_s"])
    ttft_base = min(r["ttft_s"] for r in base_rounds)
    ttft_platform = min(r["ttft_s"] for r in platform_rounds)
    speed_ratio = best_platform["tokens_per_s"] / best_base["tokens_per_s"]
    added_ms = (ttft_platform - ttft_base) * 1000
    batch_ratio = eight["tokens_per_s"] / best_platform["tokens_per_s"]
    print(
        f"baseline generate fp32   : {best_base['tokens_per_s']:7.1f} tok/s, "
        f"first token {ttft_base * 1000:6.0f} ms"
    )
    print(
        f"platform single (v1)     : {best_platform['tokens_per_s']:7.1f} tok/s, "
        f"first token {ttft_platform * 1000:6.0f} ms"
    )
    print(
        f"platform 8 chats (total) : {eight['tokens_per_s']:7.1f} tok/s "
        f"({eight['tokens']} tokens in {eight['wall_s']:.1f} s)"
    )
    print(
        f"speed ratio platform/baseline: {speed_ratio:.2f}x (target >= 1.5)  "
        f"{'PASS' if speed_ratio >= 1.5 else 'FAIL'}"
    )
    print(
        f"first-token overhead: {added_ms:.0f} ms (target < 150)  "
        f"{'PASS' if added_ms < 150 else 'FAIL'}"
    )
    print(
        f"8 chats / single: {batch_ratio:.2f}x (target >= 3)  "
        f"{'PASS' if batch_ratio >= 3 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
