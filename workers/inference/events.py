"""Generation requests and the events a request's consumer receives.

A consumer sees zero or more TokenEvents followed by exactly one DoneEvent.
"""

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class GenerationRequest:
    """One chat completion to run on a base model, optionally through a LoRA adapter.

    adapter_id None means the base model alone. `template` is the chat template the adapter was
    trained with (None: the tokenizer's own, see workers.ml.chat_format.resolve_template); the
    prompt MUST be rendered with it or the adapter sees turn markers it never learned.
    temperature 0 means greedy decoding; top_k 0 and top_p 1.0 disable those filters.
    `ignore_eos` keeps generating past end-of-sequence (benchmarks that need fixed lengths).
    """

    request_id: str
    base_id: str
    adapter_id: str | None
    messages: list[dict[str, str]]
    system_prompt: str | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 1024
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    template: str | None = None
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")


@dataclass(frozen=True)
class TokenEvent:
    """New text of the completion and the ids of the tokens generated since the last event.

    `text` never ends in half a character and never contains (part of) a stop sequence.
    """

    text: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class DoneEvent:
    """The last event of a request.

    completion_tokens counts every sampled token, the end-of-sequence token included.
    time_to_first_token_s runs from submit to the first sampled token (None if there was none);
    tokens_per_s is the decode rate after the first token (0.0 with fewer than two tokens).
    `error` is set only when finish_reason is "error" (e.g. a PromptTooLong instance).
    """

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float | None
    tokens_per_s: float
    error: Exception | None = None


Event = TokenEvent | DoneEvent
