"""The chat, compare, stop and /v1 tests of test_chat_serving.py again, answered by llama.cpp.

TUNELAB_CHAT_ENGINE=llamacpp makes the chat worker wait for each model's GGUF (the base, and each
version merged into it, q8_0, built by workers.export.serving with llama.cpp's converter)
instead of answering with the transformers-based engine meanwhile, so every answer here comes
from llama.cpp. The `auto` default is tested in test_chat_engine_auto.py.
"""

from __future__ import annotations

import pytest

from tests.workers.test_chat_serving import (  # noqa: F401  (the same tests, collected again here)
    new_chat,
    read_stream,
    send,
    test_chat_streams_and_saves_the_answer,
    test_compare_streams_both_and_counts_votes,
    test_openai_client_works_unchanged,
    test_stop_and_disconnect_free_the_worker,
)

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed; ./install.sh")
WORKER_ENV = {"TUNELAB_CHAT_ENGINE": "llamacpp"}


def _answer_engine(client, conversation: int) -> str:  # type: ignore[no-untyped-def]
    page = client.get(f"/chat/{conversation}").text
    start = page.rfind('class="answer-engine">')
    return page[start:].split(">", 1)[1].split("<", 1)[0] if start >= 0 else ""


def test_answers_name_llama_cpp_and_its_precision(client, worker, served) -> None:  # type: ignore[no-untyped-def]
    conversation = new_chat(client, served["project"], model="v2")
    [request_id] = send(client, conversation, "Hello there")
    events = read_stream(client, request_id)
    assert events[-1][0] == "done", events
    assert events[-1][1]["engine"] == "llama.cpp" and events[-1][1]["precision"] == "q8_0"
    assert _answer_engine(client, conversation) == "llama.cpp, q8_0"
