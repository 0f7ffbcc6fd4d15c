"""The default engine choice (TUNELAB_CHAT_ENGINE=auto) on a CPU: the first answer for a model
comes at once from the transformers-based engine while the model's GGUF is built in the
background; once it is there, llama.cpp answers. Switching between two versions then reloads
nothing: each has its file, kept loaded."""

from __future__ import annotations

import time

import pytest

from tests.workers.test_chat_serving import new_chat, read_stream, send

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed; ./install.sh")


def _done(client, conversation: int) -> dict:  # type: ignore[no-untyped-def]
    [request_id] = send(client, conversation, "Tell me about Zhangjiajie.")
    kind, data = read_stream(client, request_id)[-1]
    assert kind == "done", data
    return data


def test_a_fresh_version_answers_at_once_then_llama_cpp_takes_over(client, worker, served) -> None:  # type: ignore[no-untyped-def]
    conversation = new_chat(client, served["project"], model="v1")
    first = _done(client, conversation)
    assert first["engine"] == "transformers", first
    deadline = time.monotonic() + 180
    # A new conversation each time: asked again and again in one, the history outgrows the
    # tiny model's 512 tokens when the GGUF build takes long (a busy CI machine).
    while True:
        answer = _done(client, new_chat(client, served["project"], model="v1"))
        if answer["engine"] == "llama.cpp":
            break
        assert time.monotonic() < deadline, "the GGUF was not ready within 3 minutes"
        time.sleep(1)
    assert answer["precision"] == "q8_0" and answer["completion_tokens"] > 0
