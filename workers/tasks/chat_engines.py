"""Which engine answers a chat request: llama.cpp or the transformers-based engine.

On a CPU, llama.cpp (workers.inference.llamacpp) serves each model from a GGUF file made by the
export pipeline's tools (workers.export.serving: the base, or the version merged into it, with
the chat template the platform renders prompts with, q8_0 by default). The first request for a
model starts building its file in the background and is answered by the transformers-based
engine (workers.inference), so a fresh version answers at once; later requests go to llama.cpp.
Where llama.cpp is not installed, on a GPU, or for a model llama.cpp cannot convert or load,
the transformers-based engine serves (it stays the reference: the same batching, adapters
mixed in one forward pass).

TUNELAB_CHAT_ENGINE: `auto` (above), `llamacpp` (wait for the GGUF instead of answering with
the other engine meanwhile), `transformers` (never llama.cpp).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.export.serving import DEFAULT_QUANT, ServedModel, build_serving_gguf
from workers.inference import InferenceEngine, Scheduler

logger = logging.getLogger(__name__)

MODES = ("auto", "llamacpp", "transformers")


@dataclass(frozen=True)
class Route:
    """Where a request goes and how the answer's footer names it."""

    engine: str  # "llama.cpp" | "transformers"
    precision: str  # "q8_0", "f16", "float32", "bfloat16"...
    submit: Any  # (GenerationRequest) -> GenerationHandle
    request_fields: dict[str, Any]  # base_id/adapter_id as this engine names the model


def llama_cpp_usable() -> bool:
    from workers.export.gguf import converter_available, llama_cpp_available
    from workers.ml.device import pick_device

    return pick_device().type == "cpu" and llama_cpp_available() and converter_available()


def chat_threads(configured: int) -> int:
    """TUNELAB_CHAT_THREADS, or one less than the usable CPUs (at least 1): llama.cpp's threads
    spin at barriers, so when another process (a training run) takes a core they wait on each
    other and decoding collapses (2 threads on 2 cores with one busy: 72 -> ~2 tokens/s; 1
    thread: 42 tokens/s either way)."""
    import os

    if configured > 0:
        return configured
    return max(1, len(os.sched_getaffinity(0)) - 1)


class ChatEngines:
    def __init__(
        self,
        data_dir: Path,
        memory_budget_bytes: int,
        mode: str = "auto",
        quant: str = DEFAULT_QUANT,
        threads: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"chat engine must be one of {MODES}, not {mode!r}")
        self.data_dir = Path(data_dir)
        self.cache_dir = self.data_dir / "serving"
        self.mode = mode
        self.quant = quant
        self.scheduler = Scheduler(InferenceEngine(self.data_dir, memory_budget_bytes)).start()
        self.llama: Any = None
        self._builds: dict[str, Future[Path]] = {}
        self._failed: dict[str, str] = {}
        self._adapters: dict[str, str] = {}  # adapter id -> its folder on this machine
        self._lock = threading.Lock()
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="gguf-build")
        if mode != "transformers" and llama_cpp_usable():
            from workers.inference.llamacpp import LlamaCppEngine

            self.llama = LlamaCppEngine(n_threads=chat_threads(threads)).start()

    def close(self) -> None:
        self._builder.shutdown(wait=False, cancel_futures=True)
        self.scheduler.close()
        if self.llama is not None:
            self.llama.close()

    # -- routing ------------------------------------------------------------------------------

    def route(self, model: dict[str, Any], on_wait: Any = None) -> Route:
        """The engine for `model` (the request's ModelRef as a dict). `on_wait` is called once
        when the request will wait for a GGUF build (mode `llamacpp`)."""
        served = self._served(model)
        if self.llama is not None:
            name = served.cache_name(self.quant)
            path = self._gguf(served, name, wait=self.mode == "llamacpp", on_wait=on_wait)
            if path is not None:
                if not self.llama.registered(name):
                    self.llama.register_model(name, path)
                return Route("llama.cpp", self.quant, self.llama.submit,
                             {"base_id": name, "adapter_id": None})  # fmt: skip
        if served.adapter_id:
            self.scheduler.engine.register_adapter(
                served.base, served.adapter_id, served.adapter_path
            )
        precision = str(self.scheduler.engine.dtype).removeprefix("torch.")
        return Route("transformers", precision, self.scheduler.submit,
                     {"base_id": served.base, "adapter_id": served.adapter_id})  # fmt: skip

    def _served(self, model: dict[str, Any]) -> ServedModel:
        """The request's model, its adapter folder made local (fetched from the artifact store
        once per version: a version's adapter never changes)."""
        adapter_id, adapter_path = model.get("adapter_id"), model.get("adapter_path")
        if adapter_id and adapter_path:
            with self._lock:
                local = self._adapters.get(adapter_id)
            if local is None:
                from workers.artifacts import local_tree

                local = str(local_tree(adapter_path))
                if Path(local).is_dir():  # not there yet: ask the store again next time
                    with self._lock:
                        self._adapters[adapter_id] = local
            adapter_path = local
        return ServedModel(model["base"], adapter_id, adapter_path, model.get("template"))

    def needs_loading(self, model: dict[str, Any]) -> bool:
        return model["base"] not in self.scheduler.engine.loaded_bases()

    def gguf_state(self, model: dict[str, Any]) -> str:
        """ "ready", "building", "failed" or "none" (for the status line and tests)."""
        served = self._served(model)
        name = served.cache_name(self.quant)
        with self._lock:
            if name in self._failed:
                return "failed"
            future = self._builds.get(name)
        if (self.cache_dir / name).is_file():
            return "ready"
        return "building" if future is not None and not future.done() else "none"

    # -- GGUF files ---------------------------------------------------------------------------

    def _gguf(self, served: ServedModel, name: str, *, wait: bool, on_wait: Any) -> Path | None:
        path = self.cache_dir / name
        if path.is_file():
            return path
        with self._lock:
            if name in self._failed:
                return None
            future = self._builds.get(name)
            if future is None:
                future = self._builder.submit(self._build, served, path)
                self._builds[name] = future
        if not wait:
            return None
        if on_wait is not None:
            on_wait()
        try:
            return future.result()
        except Exception:
            return None

    def _build(self, served: ServedModel, path: Path) -> Path:
        from transformers import AutoTokenizer

        from workers.ml.loading import resolve_source

        try:
            # The base's folder and tokenizer only: the weights are read by the merge (for a
            # version) and by llama.cpp's converter, not held here.
            folder = resolve_source(served.base, self.data_dir).folder
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
            built = build_serving_gguf(served, Path(folder), tokenizer, path, quant=self.quant)
            logger.info("llama.cpp will serve %s from %s", served.adapter_id or served.base, built)
            return built
        except Exception as exc:
            # Not retried: the transformers-based engine keeps serving this model.
            logger.warning("no GGUF for %s (%s): serving it with transformers", served, exc)
            with self._lock:
                self._failed[path.name] = f"{type(exc).__name__}: {exc}"
            raise
