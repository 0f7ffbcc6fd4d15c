"""Chat served by llama.cpp (llama-cpp-python) on CPU, behind the Scheduler's consumer interface.

    engine = LlamaCppEngine(n_threads=2)
    engine.register_model("smollm2-135m-instruct", "/cache/smollm2-q8_0.gguf")
    engine.register_model("version-7", "/cache/version-7-q8_0.gguf")  # a merged version
    with engine:
        handle = engine.submit(GenerationRequest("r1", "smollm2-135m-instruct", "version-7",
                                                 [{"role": "user", "content": "Hi"}]))
        for event in handle:  # TokenEvent..., then one DoneEvent, as from Scheduler.submit
            ...

One GGUF file per served model: the base, and each version as its own (merged) file. A request
is served by the model registered under model_key(base_id, adapter_id): the adapter id when it
has one, else the base id. See engine.py for batching and scheduling.
"""

from workers.inference.llamacpp.engine import EngineStats, LlamaCppEngine, model_key
from workers.inference.llamacpp.errors import DecodeFailed, ModelLoadFailed, UnknownModel

__all__ = [
    "DecodeFailed",
    "EngineStats",
    "LlamaCppEngine",
    "ModelLoadFailed",
    "UnknownModel",
    "model_key",
]
