"""Benchmark: chat through the whole platform path on llama.cpp against raw llama-cpp-python.

Starts `tunelab up` on a fresh data dir (embedded Redis, SQLite, real workers, the default
engine choice), registers a random LoRA adapter (r=8, all linear layers) as version v1 of a
SmolLM2 project, waits until llama.cpp serves both v1 and the base (their q8_0 GGUFs are built on
first use), then measures with the official openai client (HTTP → Celery → infer worker →
Redis → SSE):
  raw       llama-cpp-python alone on v1's own GGUF file, the chat worker's thread count
            (TUNELAB_CHAT_THREADS default: CPUs - 1), greedy, 128 tokens
  platform  one streamed chat completion through v1, 128 tokens (ignore_eos)
  8 chats   eight concurrent streams (4 through v1, 4 through the base model)
Rounds alternate raw and platform, so machine noise hits both; the best round counts.
Targets (issue 14): platform >= 0.8x raw tokens/s, < 150 ms added to the first token, 8 chats
>= 2x the platform's single stream with every stream within 0.5-2x of their mean.

    .venv/bin/python bench/bench_serving_llamacpp.py [--rounds 3] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import openai  # noqa: E402
import torch  # noqa: E402

from bench.bench_serving import (  # noqa: E402
    MODEL,
    QUESTION,
    concurrent,
    register_version,
    start_platform,
    stream_once,
)
from bench.serving_common import random_adapter  # noqa: E402


def wait_for_llama_cpp(client: openai.OpenAI, models: list[str], data_dir: Path) -> list[Path]:
    """Ask each model until its GGUF exists (the first answers come from transformers)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        for model in models:
            stream_once(client, model, 4)
        files = sorted(f for f in (data_dir / "serving").glob("*.gguf") if f.name[0] != ".")
        if len(files) >= len(models):
            for model in models:
                stream_once(client, model, 4)  # loads each file into llama.cpp
            return files
        time.sleep(2)
    raise SystemExit("the GGUF files were not built within 15 minutes")


def raw_llama(gguf: Path, threads: int, new_tokens: int) -> dict[str, float]:
    """llama-cpp-python on its own: the prompt as the GGUF's template renders it, greedy."""
    import llama_cpp

    from workers.export.chat_render import render_chat
    from workers.export.gguf import read_chat_template

    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )  # fmt: skip
    prompt = render_chat(read_chat_template(gguf) or "", [{"role": "user", "content": QUESTION}])
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    start = time.perf_counter()
    first = None
    count = 0
    for _ in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        count += 1
        if first is None:
            first = time.perf_counter()
        if count >= new_tokens:
            break
    end = time.perf_counter()
    del llm
    assert first is not None
    return {"ttft_s": first - start, "tokens_per_s": (count - 1) / (end - first)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=8792)
    args = parser.parse_args()
    from workers.tasks.chat_engines import chat_threads

    threads = chat_threads(0)  # what the platform's chat worker uses by default

    from workers.ml.loading import load_model

    data_dir = Path(tempfile.mkdtemp(prefix="tunelab-bench-llamacpp-"))
    try:
        loaded = load_model(MODEL, data_dir=data_dir, dtype=torch.float32)  # also fills the cache
        adapter = random_adapter(loaded.model, data_dir / "bench-adapter")
        del loaded
        proc = start_platform(data_dir, args.port)
        base_url = f"http://127.0.0.1:{args.port}"
        try:
            slug = register_version(base_url, data_dir, adapter)
            client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", timeout=900)
            v1, base = f"{slug}:v1", f"{slug}:base"
            files = wait_for_llama_cpp(client, [v1, base], data_dir)
            v1_file = next(f for f in files if not f.name.startswith("base-"))
            raw_rounds, platform_rounds = [], []
            for _ in range(args.rounds):
                raw_rounds.append(raw_llama(v1_file, threads, args.new_tokens))
                platform_rounds.append(stream_once(client, v1, args.new_tokens))
            eight = max(
                (concurrent(client, [v1] * 4 + [base] * 4, args.new_tokens) for _ in range(2)),
                key=lambda r: r["tokens_per_s"],
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    best_raw = max(raw_rounds, key=lambda r: r["tokens_per_s"])
    best_platform = max(platform_rounds, key=lambda r: r["tokens_per_s"])
    ttft_raw = min(r["ttft_s"] for r in raw_rounds)
    ttft_platform = min(r["ttft_s"] for r in platform_rounds)
    speed = best_platform["tokens_per_s"] / best_raw["tokens_per_s"]
    added_ms = (ttft_platform - ttft_raw) * 1000
    batch = eight["tokens_per_s"] / best_platform["tokens_per_s"]
    low, high = eight["spread"]
    print(f"threads: {threads}; GGUF: {v1_file.name}")
    print(f"raw llama-cpp-python      : {best_raw['tokens_per_s']:7.1f} tok/s, "
          f"first token {ttft_raw * 1000:6.0f} ms")  # fmt: skip
    print(f"platform single (v1)      : {best_platform['tokens_per_s']:7.1f} tok/s, "
          f"first token {ttft_platform * 1000:6.0f} ms")  # fmt: skip
    print(f"platform 8 chats (total)  : {eight['tokens_per_s']:7.1f} tok/s "
          f"({eight['tokens']} tokens in {eight['wall_s']:.1f} s)")  # fmt: skip
    print(f"platform / raw: {speed:.2f}x (target >= 0.8)  {'PASS' if speed >= 0.8 else 'FAIL'}")
    print(f"first-token overhead: {added_ms:.0f} ms (target < 150)  "
          f"{'PASS' if added_ms < 150 else 'FAIL'}")  # fmt: skip
    print(f"8 chats / single: {batch:.2f}x (target >= 2)  {'PASS' if batch >= 2 else 'FAIL'}")
    fair = low >= 0.5 and high <= 2.0
    print(f"each stream / mean: {low:.2f}-{high:.2f}x (target within 0.5-2)  "
          f"{'PASS' if fair else 'FAIL'}")  # fmt: skip


if __name__ == "__main__":
    main()
