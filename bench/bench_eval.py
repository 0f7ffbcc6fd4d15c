"""Benchmark: an evaluation through the engine against the sequential loop people write by hand.

SmolLM2-135M-Instruct, the 40 held-out rows of examples/zhangjiajie, two models (the base and a
random LoRA adapter, r=8 on every linear layer, as version v1), 128 new tokens, greedy:
  baseline  for each model: transformers generate() one row at a time, then a separate
            perplexity pass (one forward per row), in the dtype the engine uses here
  engine    workers.evaluation.run.evaluate: perplexity through InferenceEngine.score, then every
            (row, model) request submitted at once to the scheduler (continuous batching: up
            to 16 rows and both models in each decode step)
Both sides run in this process, one after the other, on the same model weights. Target: the
engine at least 3x faster. Also printed: new tokens each side generated, and whether the
per-model perplexities agree (same answer tokens, same model: they must).

    .venv/bin/python bench/bench_eval.py [--rows 40] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench.serving_common import random_adapter  # noqa: E402

MODEL = "smollm2-135m-instruct"
HELD_OUT = ROOT / "examples" / "zhangjiajie" / "heldout.json"


def conversations(limit: int) -> list[dict]:
    rows = json.loads(HELD_OUT.read_text(encoding="utf-8"))[:limit]
    out = []
    for row in rows:
        prompt = row["instruction"] + ("\n" + row["input"] if row["input"] else "")
        out.append(
            {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": row["output"]},
                ]
            }
        )
    return out


def baseline(model, tokenizer, rows, new_tokens: int) -> tuple[float, int, float]:  # type: ignore[no-untyped-def]
    """Seconds, new tokens and corpus perplexity of the hand-written loop for one model."""
    from workers.ml.chat_format import resolve_template, tokenize_conversation

    _, template = resolve_template(tokenizer, None)  # what the engine renders prompts with
    start = time.perf_counter()
    generated = 0
    for row in rows:
        text = tokenizer.apply_chat_template(
            row["messages"][:-1], chat_template=template, tokenize=False,
            add_generation_prompt=True,
        )  # fmt: skip
        ids = tokenizer(str(text), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        generated += out.shape[1] - ids.shape[1]
    nll, tokens = 0.0, 0
    for row in rows:
        tok = tokenize_conversation(tokenizer, row["messages"], max_length=8192)
        ids = torch.tensor([tok.input_ids])
        labels = torch.tensor(tok.labels)
        with torch.inference_mode():
            logits = model(ids).logits[0].float()
        mask = labels[1:] != -100
        loss = torch.nn.functional.cross_entropy(
            logits[:-1][mask], ids[0, 1:][mask], reduction="sum"
        )
        nll += float(loss)
        tokens += int(mask.sum())
    return time.perf_counter() - start, generated, math.exp(nll / tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()

    from peft import PeftModel

    from workers.evaluation.run import (
        GenerationSettings,
        ModelUnderTest,
        evaluate,
        test_rows,
    )
    from workers.inference import InferenceEngine, Scheduler

    rows = conversations(args.rows)
    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    engine = InferenceEngine(work, 8 << 30, max_batch_size=16)
    base = engine.ensure_base(MODEL)
    model, tokenizer = base.loaded.model, base.loaded.tokenizer
    dtype = next(model.parameters()).dtype
    adapter = random_adapter(model, work / "adapter")
    threads = torch.get_num_threads()
    print(
        f"SmolLM2-135M, {len(rows)} rows x 2 models, {args.new_tokens} new tokens, greedy, "
        f"{dtype}, {threads} threads"
    )

    # --- the engine (first, while the base is loaded in it) ---
    models = [ModelUnderTest("base"), ModelUnderTest("v1", "v1", adapter)]
    test, _ = test_rows(rows)
    scheduler = Scheduler(engine).start()
    started = time.perf_counter()
    report = evaluate(
        engine, scheduler, MODEL, models, test, GenerationSettings(max_new_tokens=args.new_tokens)
    )
    engine_s = time.perf_counter() - started
    scheduler.close()
    engine_tokens = sum(
        e["outputs"][m.label]["completion_tokens"] for e in report.examples for m in models
    )
    engine_ppl = {r["version"]: r["perplexity"] for r in report.results}

    # --- the baseline: the same weights, plain transformers and peft ---
    base_s, base_tokens, base_ppl = baseline(model, tokenizer, rows, args.new_tokens)
    peft_model = PeftModel.from_pretrained(model, adapter).eval()
    v1_s, v1_tokens, v1_ppl = baseline(peft_model, tokenizer, rows, args.new_tokens)
    baseline_s = base_s + v1_s

    print(
        f"baseline  {baseline_s:8.1f} s  {base_tokens + v1_tokens:6d} new tokens "
        f"({(base_tokens + v1_tokens) / baseline_s:.1f} tok/s)  "
        f"perplexity base {base_ppl:.3f}  v1 {v1_ppl:.3f}"
    )
    print(
        f"engine    {engine_s:8.1f} s  {engine_tokens:6d} new tokens "
        f"({engine_tokens / engine_s:.1f} tok/s)  "
        f"perplexity base {engine_ppl['base']:.3f}  v1 {engine_ppl['v1']:.3f}"
    )
    ratio = baseline_s / engine_s
    print(f"speed-up  {ratio:.2f}x (target >= 3x): {'PASS' if ratio >= 3 else 'FAIL'}")
    agree = all(
        abs(a - b) / b < 0.01
        for a, b in ((engine_ppl["base"], base_ppl), (engine_ppl["v1"], v1_ppl))
    )
    print(f"perplexities agree within 1 %: {'yes' if agree else 'NO'}")


if __name__ == "__main__":
    main()
