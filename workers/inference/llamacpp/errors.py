"""Errors of the llama.cpp engine; subclasses of the inference engine's, so callers that handle
workers.inference.InferenceError handle these too."""

from workers.inference.errors import InferenceError


class UnknownModel(InferenceError):
    """A request's model key was never registered with the engine (register_model)."""


class ModelLoadFailed(InferenceError):
    """llama.cpp could not load a GGUF file or make a context for it (a missing or broken
    file, an architecture this llama.cpp does not know, not enough memory)."""


class DecodeFailed(InferenceError):
    """llama_decode returned an error; every sequence of that step's model ends with it."""
