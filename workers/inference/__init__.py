"""Tunelab's inference engine: pure ML, no Celery, Redis, database or web imports.

    engine = InferenceEngine(data_dir, memory_budget_bytes=2 << 30)
    engine.register_adapter("smollm2-135m-instruct", "job-42", "/data/adapters/job-42")
    with Scheduler(engine) as scheduler:
        handle = scheduler.submit(GenerationRequest("r1", "smollm2-135m-instruct", "job-42",
                                                    [{"role": "user", "content": "Hi"}]))
        for event in handle:  # TokenEvent..., then one DoneEvent
            ...

Requests for different adapters of one base (LoRA or DoRA, as peft saves them) share each
forward pass (see lora.py and scheduler.py) on the lean batched runner (llama_runner.py: llama,
mistral, qwen2, qwen3, gemma3_text); other architectures fall back to transformers' forward
(hf_runner.py).
"""

from workers.inference.engine import InferenceEngine, LoadedBase
from workers.inference.errors import (
    EngineClosed,
    InferenceError,
    MemoryBudgetExceeded,
    PromptTooLong,
    UnknownAdapter,
    UnsupportedAdapter,
)
from workers.inference.events import DoneEvent, Event, FinishReason, GenerationRequest, TokenEvent
from workers.inference.handle import GenerationHandle, GenerationResult
from workers.inference.hardware import inference_dtype
from workers.inference.scheduler import Scheduler, SchedulerStats

__all__ = [
    "DoneEvent",
    "EngineClosed",
    "Event",
    "FinishReason",
    "GenerationHandle",
    "GenerationRequest",
    "GenerationResult",
    "InferenceEngine",
    "InferenceError",
    "LoadedBase",
    "MemoryBudgetExceeded",
    "PromptTooLong",
    "Scheduler",
    "SchedulerStats",
    "TokenEvent",
    "UnknownAdapter",
    "UnsupportedAdapter",
    "inference_dtype",
]
