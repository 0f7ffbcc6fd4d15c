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


def test_one_training_worker_per_gpu(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # No GPU here: the driver's /proc folder is faked (the only thing that cannot exist here).
    import pytest
    from pydantic import ValidationError

    from app import gpus
    from app.config import Settings
    from app.supervisor import Supervisor

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(gpus, "NVIDIA_PROC", tmp_path / "absent")
    assert gpus.train_worker_devices("auto") == [None]  # the CPU: one worker, env untouched
    for n in range(3):
        (tmp_path / "gpus" / f"0000:0{n}:00.0").mkdir(parents=True)
    monkeypatch.setattr(gpus, "NVIDIA_PROC", tmp_path / "gpus")
    assert gpus.train_worker_devices("auto") == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert gpus.train_worker_devices("auto") == ["2", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpus.train_worker_devices("auto") == [None]  # one GPU: nothing to split
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert gpus.train_worker_devices("auto") == [None]
    assert gpus.train_worker_devices("2") == ["0", "1"]
    assert gpus.train_worker_devices("0") == [""]  # CPU even where GPUs exist
    # `all`: one worker that sees the three GPUs, so a 3-process run fits it (placement).
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert gpus.train_worker_devices("all") == [None]
    assert gpus.training_slots(cpu_processes=1) == ("cuda", 3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.training_slots(cpu_processes=2) == ("cpu", 2)

    workers = Supervisor(Settings(worker_gpus="2"), "127.0.0.1", 0).train_workers({"A": "1"})
    assert [env["CUDA_VISIBLE_DEVICES"] for _, _, env in workers] == ["0", "1"]
    assert all(env["A"] == "1" for _, _, env in workers)
    nodes = [_option(cmd, "-n") for _, cmd, _ in workers]
    assert len(set(nodes)) == 2 and all(_option(cmd, "-Q") == "train,eval" for _, cmd, _ in workers)
    cpu_only = Supervisor(Settings(worker_gpus="0"), "127.0.0.1", 0).train_workers({})
    assert [env["CUDA_VISIBLE_DEVICES"] for _, _, env in cpu_only] == [""]
    with pytest.raises(ValidationError):
        Settings(worker_gpus="many")
