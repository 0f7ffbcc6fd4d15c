"""Benchmark: the llama.cpp serving engine against plain llama-cpp-python on the same GGUF file.

SmolLM2-135M-Instruct is converted once to a q8_0 (or --outtype f16) GGUF by llama.cpp's own converter (the
export pipeline's convert_to_gguf), then measured in one process with the same thread count,
interleaved round by round (so a busy machine slows both sides alike; the best round counts):
  raw       llama-cpp-python's Llama(...).generate, greedy, one stream
  single    the engine, one stream (submit -> TokenEvents -> DoneEvent)
  sampled   the engine, one stream sampled through llama.cpp's sampler chain
            (temperature 0.7, top-k 40, top-p 0.95, repetition penalty 1.1)
  8 streams the engine, 8 concurrent requests: 4 on model "a", 4 on model "b" (the same file
            registered under a second key: its own weights and context, as a second version)
  8 on one  the engine, 8 concurrent requests on model "a" alone (one batch)
Every stream generates exactly --new-tokens tokens (EOS ignored). Rates are decode rates after
the first token, as DoneEvent.tokens_per_s defines them; the 8-stream figures are total tokens
over the wall time. Targets: single >= 0.8x raw; 8 streams >= 2x single; each of the 8 streams
within 0.5-2x of their mean.

    .venv/bin/python bench/bench_llamacpp_engine.py [--threads 2] [--rounds 3] [--outtype f16] [--flash-attn]
        [--cache-dir DIR]  (keeps the GGUF file and the model's data dir between runs)
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workers.export.chat_render import render_chat  # noqa: E402
from workers.export.gguf import convert_to_gguf  # noqa: E402
from workers.inference import GenerationRequest  # noqa: E402
from workers.inference.llamacpp import LlamaCppEngine  # noqa: E402
from workers.ml.loading import resolve_source  # noqa: E402

MODEL = "smollm2-135m-instruct"
QUESTION = "Tell me about the Zhangjiajie National Forest Park and how to visit it."
MESSAGES = [{"role": "user", "content": QUESTION}]


def gguf_file(cache: Path, outtype: str) -> Path:
    target = cache / f"{MODEL}-{outtype}.gguf"
    if not target.is_file():
        started = time.perf_counter()
        folder = resolve_source(MODEL, cache / "data").folder
        convert_to_gguf(folder, target, outtype)
        print(f"converted {MODEL} to {outtype} in {time.perf_counter() - started:.1f} s")
    return target


class Raw:
    """Plain llama-cpp-python on the same file, prompt rendered as the engine renders it."""

    def __init__(self, path: Path, threads: int, flash_attn: bool) -> None:
        import llama_cpp
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
            flash_attn=flash_attn, verbose=False,
        )  # fmt: skip
        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

        def text(token: int) -> str:
            return (llama_cpp.llama_vocab_get_text(vocab, token) or b"").decode()

        prompt = render_chat(
            self.llm.metadata["tokenizer.chat_template"],
            MESSAGES,
            bos_token=text(self.llm.token_bos()),
            eos_token=text(self.llm.token_eos()),
        )
        self.prompt = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)

    def run(self, new_tokens: int) -> dict[str, Any]:
        """Greedy, exactly new_tokens tokens (generate() itself never stops at EOS). reset()
        first: generate() would otherwise reuse the previous run's KV cache for the prompt
        and skip the prefill that the engine (which caches no prompts) does every time."""
        self.llm.reset()
        start = time.perf_counter()
        first = None
        out: list[int] = []
        for token in self.llm.generate(self.prompt, temp=0.0, reset=True):
            first = first or time.perf_counter()
            out.append(token)
            if len(out) == new_tokens:
                break
        end = time.perf_counter()
        assert first is not None
        return {"rate": (len(out) - 1) / (end - first), "ttft": first - start, "ids": out}


def request(key: str, index: int, new_tokens: int, **params: Any) -> GenerationRequest:
    params.setdefault("temperature", 0.0)
    return GenerationRequest(
        f"{key}{index}", key, None, MESSAGES, max_new_tokens=new_tokens, ignore_eos=True, **params
    )


def engine_run(engine: LlamaCppEngine, requests: list[GenerationRequest]) -> dict[str, Any]:
    start = time.perf_counter()
    handles = [engine.submit(r) for r in requests]
    results = [h.result(timeout=600) for h in handles]
    wall = time.perf_counter() - start
    for result in results:
        if result.done.finish_reason != "length":
            sys.exit(f"engine request failed: {result.done}")
    rates = [r.done.tokens_per_s for r in results]
    total = sum(r.done.completion_tokens for r in results) / wall
    return {
        "rate": rates[0] if len(results) == 1 else total,
        "ttft": sum(r.done.time_to_first_token_s or 0.0 for r in results) / len(results),
        "streams": rates,
        "ids": results[0].token_ids,
        "prompt_tokens": results[0].done.prompt_tokens,
    }


def measure(args: argparse.Namespace, path: Path) -> dict[str, list[dict[str, Any]]]:
    n = args.new_tokens
    raw = Raw(path, args.threads, args.flash_attn)
    engine = LlamaCppEngine(n_threads=args.threads, max_sequences=8, flash_attn=args.flash_attn)
    engine.register_model("a", path)
    engine.register_model("b", path)
    sampled = {"temperature": 0.7, "top_k": 40, "top_p": 0.95, "repetition_penalty": 1.1}
    plans = {
        "single": [request("a", 0, n)],
        "sampled": [request("a", 0, n, seed=1, **sampled)],
        "batch": [request("a" if i % 2 == 0 else "b", i, n) for i in range(8)],
        "one_model": [request("a", i, n) for i in range(8)],
    }
    results: dict[str, list[dict[str, Any]]] = {}
    with engine:
        engine_run(engine, [request("a", 0, 8), request("b", 1, 8)])  # loads both models
        raw.run(8)  # warm-up
        for round_index in range(args.rounds):
            results.setdefault("raw", []).append(raw.run(n))
            for name, requests in plans.items():
                results.setdefault(name, []).append(engine_run(engine, requests))
            line = ", ".join(f"{k} {v[-1]['rate']:.1f}" for k, v in results.items())
            print(f"round {round_index + 1} (tok/s): {line}, load {os.getloadavg()[0]:.2f}")
        print(f"engine: {engine.stats.decode_calls} decode calls, loads {dict(engine.load_count)}")
    raw.llm.close()
    same = results["raw"][-1]["ids"] == list(results["single"][-1]["ids"])
    print(f"prompt {len(raw.prompt)} tokens (engine {results['single'][-1]['prompt_tokens']}); "
          f"engine greedy tokens == raw greedy tokens: {same}")  # fmt: skip
    if not same or len(raw.prompt) != results["single"][-1]["prompt_tokens"]:
        sys.exit("the engine's greedy answer differs from llama-cpp-python's")
    return results


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> bool:
    best = {k: max(v, key=lambda r: r["rate"]) for k, v in results.items()}
    labels = {
        "raw": "llama-cpp-python Llama, 1 stream",
        "single": "engine, 1 stream, greedy",
        "sampled": "engine, 1 stream, sampler chain",
        "batch": "engine, 8 streams (4 a + 4 b)",
        "one_model": "engine, 8 streams (8 a)",
    }
    print(f"\n{'best of ' + str(args.rounds) + ' rounds, ' + str(args.threads) + ' threads':36s}"
          f" {'tok/s':>8s} {'x raw':>6s} {'TTFT ms':>8s}")  # fmt: skip
    for name, label in labels.items():
        row = best[name]
        ratio = row["rate"] / best["raw"]["rate"]
        print(f"{label:36s} {row['rate']:8.1f} {ratio:6.2f} {row['ttft'] * 1e3:8.0f}")
    streams = best["batch"]["streams"]
    mean = sum(streams) / len(streams)
    spread = [s / mean for s in streams]
    print(f"8 streams (a,b,a,b,...): {', '.join(f'{s:.1f}' for s in streams)} tok/s each")
    added = (best["single"]["ttft"] - best["raw"]["ttft"]) * 1e3
    print(f"time to first token added by the engine: {added:.0f} ms")
    checks = [
        ("engine single / raw", best["single"]["rate"] / best["raw"]["rate"], 0.8),
        ("engine 8 streams / engine single", best["batch"]["rate"] / best["single"]["rate"], 2.0),
    ]
    ok = True
    for label, ratio, target in checks:
        verdict = "PASS" if ratio >= target else "FAIL"
        ok &= ratio >= target
        print(f"{label:36s} {ratio:5.2f}x (target >= {target}x)  {verdict}")
    fair = all(0.5 <= s <= 2.0 for s in spread)
    ok &= fair
    print(f"{'each stream / mean of the 8':36s} {min(spread):.2f}-{max(spread):.2f} "
          f"(target 0.5-2)  {'PASS' if fair else 'FAIL'}")  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--outtype", choices=("q8_0", "f16"), default="q8_0")
    parser.add_argument("--flash-attn", action="store_true", help="on both sides")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    temp = Path(tempfile.mkdtemp(prefix="tunelab-llamacpp-bench-"))
    cache = args.cache_dir or temp
    cache.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        print(f"{MODEL} {args.outtype}, {args.new_tokens} new tokens, flash attention "
              f"{'on' if args.flash_attn else 'off'}, load {os.getloadavg()}")  # fmt: skip
        results = measure(args, gguf_file(cache, args.outtype))
        ok = report(args, results)
        print(f"total bench time {time.perf_counter() - started:.0f} s")
        return 0 if ok else 1
    finally:
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
