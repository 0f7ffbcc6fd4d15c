"""keep_best, early stopping and continuing from an earlier adapter, on the tiny model.

The runs train on one repeated conversation and validate on different ones: at a learning rate
of 3e-3 the validation loss falls for a few steps (the shared chat format is learned), then
rises as the model overfits the training answer. Each epoch is one step (8 rows, batch 8), so
"evaluate every step" and "checkpoint every epoch" line up with steps.
"""

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from app.error_codes import JobError
from tests.training.conftest import arithmetic_rows, chat, write_jsonl
from workers.training.best import BEST_DIR
from workers.training.errors import UnsupportedSetting

OVERFIT = {
    "learning_rate": 3e-3,
    "epochs": 12,
    "batch_size": 8,
    "scheduler": "constant",
    "warmup_ratio": 0,
    "eval_every_steps": 1,
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    train = [chat("Say the magic words.", "Open sesame, open sesame!")] * 8
    return {
        "train": write_jsonl(tmp_path / "magic.jsonl", train),
        "val": write_jsonl(tmp_path / "val.jsonl", arithmetic_rows(4)),
    }


def weights(adapter: Path) -> dict[str, torch.Tensor]:
    return load_file(adapter / "adapter_model.safetensors")


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def eval_losses(reporter: Any) -> list[float]:
    return [e["eval_loss"] for e in reporter.events]


def expected_early_stop(losses: list[float], patience: int, min_delta: float) -> int | None:
    """The step early stopping should end at, by its rule, from the evaluated losses."""
    best, waiting = None, 0
    for step, loss in enumerate(losses, start=1):
        improved = best is None or loss < best - min_delta
        waiting = 0 if improved else waiting + 1
        best = loss if best is None or loss < best else best
        if waiting >= patience:
            return step
    return None


def test_keep_best_saves_the_adapter_of_the_lowest_eval_loss(
    run_train: Any, files: dict[str, Path], tmp_path: Path
) -> None:
    best, rep = run_train(OVERFIT, files["train"], val_path=files["val"], out_dir=tmp_path / "a")
    losses = eval_losses(rep)
    assert len(losses) == best.steps == 12 and None not in losses
    lowest = losses.index(min(losses)) + 1
    assert 1 < lowest < best.steps  # the fixture's premise: eval loss falls, then rises
    assert (best.best_step, best.best_eval_loss) == (lowest, min(losses))
    assert best.adapter_step == lowest and best.eval_loss == losses[-1]
    assert (tmp_path / "a" / BEST_DIR / "adapter" / "adapter_model.safetensors").is_file()

    # The same run stopped by hand at the best step has exactly the weights of that step.
    at_best, _ = run_train(
        {**OVERFIT, "keep_best": False},
        files["train"],
        val_path=files["val"],
        out_dir=tmp_path / "b",
        stop_at=(lowest, "stop"),
    )
    assert at_best.steps == lowest and at_best.adapter_step == lowest
    assert same(weights(best.adapter_path), weights(at_best.adapter_path))

    # Without keep_best the same run saves its last weights, which differ.
    last, rep_last = run_train(
        {**OVERFIT, "keep_best": False},
        files["train"],
        val_path=files["val"],
        out_dir=tmp_path / "c",
    )
    assert eval_losses(rep_last) == losses  # the same trajectory
    assert last.adapter_step == last.steps and last.best_step == lowest
    assert not same(weights(best.adapter_path), weights(last.adapter_path))
    assert not (tmp_path / "c" / BEST_DIR).exists()


def test_stopping_by_hand_evaluates_the_weights_as_they_stand(
    run_train: Any, files: dict[str, Path]
) -> None:
    # Evaluation is due only at the end, which a stop at step 3 never reaches.
    result, rep = run_train(
        {**OVERFIT, "eval_every_steps": 100},
        files["train"],
        val_path=files["val"],
        stop_at=(3, "stop"),
    )
    assert result.status == "stopped" and all(e["eval_loss"] is None for e in rep.events)
    assert result.eval_loss is not None
    assert (result.best_step, result.adapter_step) == (3, 3)
    assert result.best_eval_loss == result.eval_loss


def test_keep_best_without_validation_data_keeps_the_last_weights(run_train: Any) -> None:
    result, _ = run_train({"batch_size": 8})
    assert result.best_step is None and result.best_eval_loss is None
    assert result.adapter_step == result.steps == 2
    assert not (result.adapter_path.parent / BEST_DIR).exists()


def test_the_best_adapter_survives_a_resume(
    run_train: Any, files: dict[str, Path], tmp_path: Path
) -> None:
    settings = {**OVERFIT, "checkpoint_every_steps": 3}
    full, _ = run_train(settings, files["train"], val_path=files["val"], out_dir=tmp_path / "full")
    # Cancelled at step 5: the newest checkpoint is step 3, older than the best (step 4 here).
    first, _ = run_train(
        settings,
        files["train"],
        val_path=files["val"],
        out_dir=tmp_path / "resumed",
        stop_at=(5, "cancel"),
    )
    assert first.checkpoint_path.name == "step-3"
    resumed, _ = run_train(
        settings,
        files["train"],
        val_path=files["val"],
        out_dir=tmp_path / "resumed",
        resume_from=first.checkpoint_path,
    )
    assert (resumed.best_step, resumed.adapter_step) == (full.best_step, full.best_step)
    assert same(weights(resumed.adapter_path), weights(full.adapter_path))


def test_early_stopping_ends_after_patience_evaluations_without_improvement(
    run_train: Any, files: dict[str, Path]
) -> None:
    reference, rep_ref = run_train(
        {**OVERFIT, "keep_best": False}, files["train"], val_path=files["val"]
    )
    stop = expected_early_stop(eval_losses(rep_ref), patience=2, min_delta=0.0)
    assert stop is not None and stop < reference.steps

    result, rep = run_train(
        {**OVERFIT, "early_stopping_patience": 2}, files["train"], val_path=files["val"]
    )
    assert result.status == "completed"  # an early stop is a successful end
    assert result.early_stopped_at_step == result.steps == len(rep.events) == stop
    assert eval_losses(rep) == eval_losses(rep_ref)[:stop]
    assert result.adapter_step == result.best_step == stop - 2  # keep_best: the last improvement
    assert any("early stopping at step" in m for m in rep.messages)


def test_min_delta_decides_what_counts_as_an_improvement(
    run_train: Any, files: dict[str, Path]
) -> None:
    # No evaluation can beat the first by 5 nats: the second one ends the run.
    result, rep = run_train(
        {**OVERFIT, "early_stopping_patience": 1, "early_stopping_min_delta": 5.0},
        files["train"],
        val_path=files["val"],
    )
    first, second = eval_losses(rep)
    assert result.early_stopped_at_step == result.steps == 2
    assert result.best_step == (2 if second < first else 1)  # the best still follows any drop


def test_continue_from_starts_at_the_parent_weights(run_train: Any, tmp_path: Path) -> None:
    parent, _ = run_train({"batch_size": 8, "rank": 4, "alpha": 8}, out_dir=tmp_path / "parent")
    # Warmup makes step 1's learning rate 0, so its checkpoint holds the starting weights.
    child_settings = {
        "batch_size": 4,
        "rank": 4,
        "alpha": 8,
        "warmup_ratio": 0.5,
        "checkpoint_every_steps": 1,
    }
    child, rep = run_train(
        child_settings,
        out_dir=tmp_path / "child",
        init_adapter=parent.adapter_path,
        stop_at=(1, "cancel"),
    )
    assert rep.events[0]["lr"] == 0 and child.checkpoint_path.name == "step-1"
    assert rep.info["initialized_from"] == str(parent.adapter_path)
    start = weights(child.checkpoint_path / "adapter")
    assert same(start, weights(parent.adapter_path))

    fresh, _ = run_train(child_settings, out_dir=tmp_path / "fresh", stop_at=(1, "cancel"))
    assert not same(weights(fresh.checkpoint_path / "adapter"), start)


def test_continue_from_an_adapter_of_another_shape_is_a_clear_error(
    run_train: Any, tmp_path: Path
) -> None:
    parent, _ = run_train({"batch_size": 8, "rank": 4}, out_dir=tmp_path / "parent")
    with pytest.raises(UnsupportedSetting, match="does not match") as info:
        run_train({"rank": 8}, out_dir=tmp_path / "child", init_adapter=parent.adapter_path)
    assert info.value.code == JobError.PARENT_ADAPTER_MISMATCH
    assert info.value.params == {"path": str(parent.adapter_path)}
