"""How the chat worker names an engine's failure to the user (workers/tasks/infer.py)."""

import pytest

pytest.importorskip("llama_cpp")

from workers.inference.errors import PromptTooLong  # noqa: E402
from workers.inference.llamacpp.errors import DecodeFailed, ModelLoadFailed, UnknownModel  # noqa: E402
from workers.tasks.infer import model_unavailable  # noqa: E402


@pytest.mark.parametrize("error", [UnknownModel("no such model"), ModelLoadFailed("bad file")])
def test_llamacpp_model_errors_read_as_model_unavailable(error: Exception) -> None:
    # llama.cpp reports these in the DoneEvent, so without this mapping the user would see
    # the generic "something went wrong" instead of "this model cannot be loaded".
    assert model_unavailable(error)


@pytest.mark.parametrize("error", [None, DecodeFailed("step failed"), ValueError("x")])
def test_other_errors_are_not_model_unavailable(error: Exception | None) -> None:
    assert not model_unavailable(error)


def test_prompt_too_long_is_not_model_unavailable() -> None:
    assert not model_unavailable(PromptTooLong.__new__(PromptTooLong))
