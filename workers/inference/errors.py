"""Typed errors of the inference engine; str(error) is a sentence fit to show a user."""


class InferenceError(Exception):
    """Base of every error the inference engine reports for a request or a model."""


class PromptTooLong(InferenceError):
    """The rendered prompt has more tokens than the model's context window allows."""

    def __init__(self, prompt_tokens: int, limit: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.over_by = prompt_tokens - limit
        super().__init__(
            f"the prompt has {prompt_tokens} tokens but the model accepts at most {limit} "
            f"({self.over_by} too many); shorten the conversation"
        )


class UnknownAdapter(InferenceError):
    """A request names an adapter that was never registered with the engine."""


class UnsupportedAdapter(InferenceError):
    """An adapter folder is not a plain LoRA adapter that fits the base model."""


class MemoryBudgetExceeded(InferenceError):
    """A model cannot be loaded within the memory budget, even after evicting idle models."""


class EngineClosed(InferenceError):
    """The scheduler was closed before or while the request ran."""
