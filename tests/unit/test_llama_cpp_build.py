"""The llama.cpp that ./install.sh builds uses its own thread pool, not OpenMP.

In the chat worker llama.cpp shares a process with torch; once torch has used its OpenMP
threads, an OpenMP build of llama.cpp decodes at less than half its speed (measured 72 -> 31
tokens/s, SmolLM2 q8_0, 2 cores). The build options live in install.sh and the Dockerfile."""

from __future__ import annotations

import pytest


def test_llama_cpp_is_built_without_openmp() -> None:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    info = llama_cpp.llama_print_system_info().decode()
    assert "OPENMP = 1" not in info, f"rebuild with ./install.sh (-DGGML_OPENMP=OFF): {info}"
