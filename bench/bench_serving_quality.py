"""Benchmark: what the llama.cpp chat engine's q8_0 file costs in answer quality.

Issue 14: the q8_0 engine's perplexity on the held-out demo rows must be within 2 % of the
float32 transformers model's. The GGUF is the one chat serves, made by the serving build
(workers/export/serving.build_serving_gguf: the base with the platform's chat template,
llama.cpp's converter, q8_0). Each of the 40 rows of examples/zhangjiajie/heldout.json is
rendered as a whole conversation (user question, reference answer) with the model's chat
template and scored token by token: llama.cpp on the GGUF (logits of every position), and
transformers in float32 on the same text. The token counts are printed for both, so a
tokenizer difference would show.

    .venv/bin/python bench/bench_serving_quality.py [--quant q8_0|f16] [--model ID]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from workers.export.gguf import gguf_perplexity  # noqa: E402
from workers.export.serving import ServedModel, build_serving_gguf  # noqa: E402
from workers.ml.loading import load_model, resolve_source  # noqa: E402

HELDOUT = ROOT / "examples" / "zhangjiajie" / "heldout.json"
TOLERANCE = 0.02


def conversations(path: Path) -> list[list[dict[str, str]]]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [
        [
            {
                "role": "user",
                "content": "\n\n".join(p for p in (r["instruction"], r["input"]) if p),
            },
            {"role": "assistant", "content": r["output"]},
        ]
        for r in rows
    ]


def transformers_perplexity(model: torch.nn.Module, tokenizer, texts: list[str]) -> dict:
    """Float32 perplexity over `texts`, every token after the first scored (as gguf_perplexity)."""
    total, count = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=True, return_tensors="pt").input_ids
            if ids.shape[1] < 2:
                continue
            logits = model(ids).logits[0, :-1].double()
            nll = F.cross_entropy(logits, ids[0, 1:], reduction="sum")
            total += float(nll)
            count += ids.shape[1] - 1
    return {"nll": total / count, "perplexity": math.exp(total / count), "tokens": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--quant", default="q8_0", choices=["q8_0", "f16"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tunelab-quality-") as tmp:
        data_dir = Path(tmp)
        loaded = load_model(args.model, data_dir=data_dir, device="cpu", dtype="float32")
        folder = resolve_source(args.model, data_dir).folder
        texts = [
            loaded.tokenizer.apply_chat_template(m, tokenize=False) for m in conversations(HELDOUT)
        ]
        reference = transformers_perplexity(loaded.model, loaded.tokenizer, texts)
        gguf = build_serving_gguf(
            ServedModel(base=args.model),
            folder,
            loaded.tokenizer,
            data_dir / "m.gguf",
            quant=args.quant,
        )
        served = gguf_perplexity(gguf, texts, n_ctx=2048)

    ratio = served["perplexity"] / reference["perplexity"]
    print(f"model {args.model}, {len(texts)} held-out conversations ({HELDOUT.name})")
    print(
        f"transformers float32  : perplexity {reference['perplexity']:.4f} "
        f"over {reference['tokens']} tokens"
    )
    print(
        f"llama.cpp {args.quant:<11} : perplexity {served['perplexity']:.4f} "
        f"over {served['tokens']} tokens"
    )
    verdict = "PASS" if abs(ratio - 1) <= TOLERANCE else "FAIL"
    print(
        f"{args.quant} / float32: {ratio:.4f} ({(ratio - 1) * 100:+.2f} %, target within ±2 %)  {verdict}"
    )


if __name__ == "__main__":
    main()
