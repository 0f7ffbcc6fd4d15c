"""The worker pools `tunelab up` starts: sized for what runs in them."""

import inspect

from app.supervisor import worker_command


def _option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_chat_pool_holds_a_full_engine_batch_and_more() -> None:
    # Each streaming chat keeps one pool thread for its whole answer: a pool no larger than the
    # engine's batch would serialise concurrent chats (seen: 8 chats ran 4 at a time).
    from workers.inference import InferenceEngine

    cmd = worker_command(["infer", "data", "export"], "main")
    batch = inspect.signature(InferenceEngine).parameters["max_batch_size"].default
    assert _option(cmd, "--pool") == "threads"
    assert int(_option(cmd, "--concurrency")) > batch


def test_training_gets_a_fresh_process_per_job() -> None:
    cmd = worker_command(["train"], "train")
    assert _option(cmd, "--pool") == "prefork"
    assert _option(cmd, "--concurrency") == "1"
    assert _option(cmd, "--max-tasks-per-child") == "1"
