"""train(): one LoRA fine-tuning run, from a base model and a JSONL file to a PEFT adapter.

A plain PyTorch loop rather than transformers' Trainer: the loss is computed on trainable
positions only (loss.py), batches are length-grouped (data.py), and checkpoints, stopping and
metrics follow Tunelab's own contract (reporter.py). Read top to bottom: load, data, build the
LoRA model, optimizer, resume, loop, save.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from app.schemas.training import Method, TrainingConfig
from workers.disk import staged_dir
from workers.ml.device import pick_device
from workers.ml.loading import load_model, resolve_source
from workers.training.best import best_adapter, observe, patience_spent, save_best
from workers.training.build import (
    build_optimizer,
    build_peft_model,
    build_scheduler,
    init_from_adapter,
    steps_per_epoch,
    total_steps,
)
from workers.training.checkpoint import RunState, checkpoint_dirs, load_checkpoint, save_checkpoint
from workers.training.data import (
    LengthGroupedBatches,
    collate,
    eval_batches,
    load_datasets,
    padding_fraction,
)
from workers.training.errors import out_of_memory_as_training_error
from workers.training.group import join_group, wrap_ddp
from workers.training.loss import full_logits_loss_sum, masked_loss_sum, reference_loss_matches
from workers.training.memory import peak_accelerator_bytes, peak_rss_bytes
from workers.training.precision import (
    check_method,
    keep_half_inputs,
    load_quantized,
    plan_precision,
)
from workers.training.reporter import NullReporter, Reporter, ShouldStop, never_stop
from workers.training.result import TrainResult, versions
from workers.training.step import StepContext, autocast, evaluate, iterate_windows, run_window

# Smoothing of the reported training loss: each step counts 10%, so the EMA averages over
# roughly the last 10 steps, enough to see a trend through batch-to-batch noise.
EMA_BETA = 0.9


def train(
    config: TrainingConfig,
    base_model: str,
    data_dir: Path,
    train_path: Path,
    out_dir: Path,
    reporter: Reporter,
    should_stop: ShouldStop,
    *,
    val_path: Path | None = None,
    resume_from: Path | None = None,
    init_adapter: Path | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `train_path` (normalized `{"messages": [...]}` JSONL).

    base_model: a built-in id, local folder or hub id (workers.ml.loading); data_dir: where the
    model cache lives. Writes out_dir/adapter (PEFT format) unless cancelled, and checkpoints
    under out_dir/checkpoints. init_adapter: a saved PEFT adapter (an earlier version) whose
    weights the LoRA layers start from instead of peft's initialisation; its rank and target
    modules must be the config's. With config.keep_best and validation data, out_dir/adapter is
    the adapter of the lowest eval loss (kept in out_dir/best meanwhile). Raises EmptyDataset
    before training when no example is usable, TrainingOOM with advice when memory runs out,
    ValueError for settings this device cannot run or an init_adapter that does not fit.
    """
    session_start = time.perf_counter()
    out_dir = Path(out_dir)

    # --- device and precision: fail fast on what this machine cannot do ---
    target = pick_device(device)
    # Under torchrun (WORLD_SIZE > 1) this process is one rank of a group (group.py): only rank
    # 0 reports, reads the stop flag and writes checkpoints and the adapter; every rank trains.
    group = join_group(target)
    main = group is None or group.is_main
    world = group.world if group is not None else 1
    if group is not None:
        target = group.device
        if not main:
            reporter, should_stop = NullReporter(), never_stop
    elif config.processes > 1:
        reporter.log(f"one process only: `processes`={config.processes} needs train_with_torchrun")
    check_method(config, target)
    plan = plan_precision(config, target)
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    # --- load the base model and its tokenizer ---
    if config.method is Method.QLORA:
        model, tokenizer = load_quantized(resolve_source(base_model, data_dir).folder, target, plan)
    else:
        loaded = load_model(base_model, data_dir=data_dir, device=target, dtype=plan.weight_dtype)
        model, tokenizer = loaded.model, loaded.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # --- data: tokenize, split, plan length-grouped batches ---
    train_set, val_set, data_stats = load_datasets(
        tokenizer,
        Path(train_path),
        Path(val_path) if val_path is not None else None,
        max_length=config.max_length,
        val_percent=config.val_percent,
        seed=config.seed,
        template=config.chat_template,
        overlength=config.overlength.value,
    )
    lengths = [len(e) for e in train_set]
    # The group's batches (batch_size x processes); each rank trains its shard of each one.
    sampler = LengthGroupedBatches(lengths, config.batch_size * world, config.seed)
    val_plan = eval_batches(val_set, config.batch_size)
    per_epoch = steps_per_epoch(len(sampler), config.gradient_accumulation)
    n_steps = total_steps(config, per_epoch)

    # --- build the LoRA model (seeded, so the same config gives the same initial adapter) ---
    torch.manual_seed(config.seed)
    peft_model = build_peft_model(model, config)
    if init_adapter is not None and resume_from is None:  # a checkpoint's weights win anyway
        init_from_adapter(peft_model, Path(init_adapter))
    causal_lm = peft_model.get_base_model()  # the *ForCausalLM with LoRA layers injected
    params = [p for p in peft_model.parameters() if p.requires_grad]
    if plan.autocast_dtype is not None:
        keep_half_inputs(peft_model)
    # The selective loss must agree with the model's own; unknown output heads fall back.
    probe = {k: v.to(target) for k, v in collate([min(train_set, key=len)], pad_id).items()}
    with autocast(target, plan):
        selective = reference_loss_matches(causal_lm, probe, plan.compute_dtype)

    # --- optimizer, schedule, and the state to resume ---
    optimizer = build_optimizer(params, config)
    scheduler = build_scheduler(optimizer, config, n_steps)
    scaler = torch.amp.GradScaler(target.type) if plan.grad_scaler else None
    loss_fn = masked_loss_sum if selective else full_logits_loss_sum
    ddp = wrap_ddp(causal_lm, loss_fn, plan.compute_dtype, group) if group is not None else None
    ctx = StepContext(
        causal_lm, loss_fn, pad_id, target, plan, params, optimizer, scheduler, scaler,
        config.max_grad_norm, group, ddp,
    )  # fmt: skip
    state = RunState(config=config.model_dump(mode="json"))
    if resume_from is not None:
        state = load_checkpoint(Path(resume_from), peft_model, optimizer, scheduler, scaler)
        if state.config != config.model_dump(mode="json"):
            reporter.log("resuming with a configuration that differs from the checkpoint's")
    prior_elapsed, resumed_from = state.elapsed_s, state.step

    def checkpoint() -> Path | None:
        if not main:  # the ranks' weights and optimizer states are the same: rank 0 saves
            return None
        path = save_checkpoint(out_dir, peft_model, optimizer, scheduler, state, scaler)
        reporter.log(f"checkpoint saved: {path}")
        reporter.checkpoint(path)
        return path

    def record_eval(loss: float | None) -> None:
        """Track the best eval loss and patience; keep the best adapter on disk (best.py)."""
        if observe(state, loss, config.early_stopping_min_delta) and config.keep_best and main:
            save_best(out_dir, peft_model, state)

    info: dict[str, Any] = {
        "base_model": base_model,
        "device": str(target),
        "precision": plan.name,
        "method": config.method.value,
        "train_examples": len(train_set),
        "val_examples": len(val_set),
        "data": data_stats,
        "padding_fraction": round(padding_fraction(sampler.epoch(0), lengths), 4),
        "trainable_params": sum(p.numel() for p in params),
        "total_params": sum(p.numel() for p in peft_model.parameters()),
        "steps_per_epoch": per_epoch,
        "loss": "selective" if selective else "full_logits",
        "resumed_from_step": resumed_from,
        "initialized_from": str(init_adapter) if init_adapter is not None else None,
        "threads": torch.get_num_threads(),
        "processes": world,
    }
    reporter.start(n_steps, info)
    _log_overlength(reporter, data_stats, config)
    if not selective:
        reporter.log("this model's output head is not recognised: using the full-logits loss")

    # --- the loop: one optimizer step per accumulation window ---
    status, saved_step, evaluated_step = "completed", -1, -1
    early_stopped_at: int | None = None
    step_times: list[float] = []
    causal_lm.train()
    with out_of_memory_as_training_error(
        config.batch_size, config.max_length, config.gradient_checkpointing, str(target)
    ):
        windows = iterate_windows(sampler, config.gradient_accumulation, state.epoch, state.window)
        for epoch, index, n_windows, window in windows:
            if state.step >= n_steps:
                break
            began = time.perf_counter()
            if group is not None:
                group.reseed(config.seed, state.step)
            outcome = run_window(ctx, train_set, window)
            step_times.append(time.perf_counter() - began)
            state.step += 1
            state.tokens_seen += outcome.tokens
            state.last_loss = outcome.loss
            state.loss_ema = _ema(state.loss_ema, outcome.loss)
            epoch_end = index + 1 == n_windows
            state.epoch, state.window = (epoch + 1, 0) if epoch_end else (epoch, index + 1)
            last = state.step == n_steps

            every = config.eval_every_steps
            eval_due = (state.step % every == 0) if every else epoch_end
            eval_loss = evaluate(ctx, val_set, val_plan) if eval_due or last else None
            if eval_loss is not None:
                state.eval_loss, evaluated_step = eval_loss, state.step
                record_eval(eval_loss)
            state.elapsed_s = prior_elapsed + time.perf_counter() - session_start
            reporter.metrics(
                {
                    "step": state.step,
                    "total_steps": n_steps,
                    "epoch": round(state.step / per_epoch, 4),
                    "loss": outcome.loss,
                    "eval_loss": eval_loss,
                    "lr": outcome.lr,
                    "grad_norm": outcome.grad_norm,
                    "tokens_per_s": outcome.tokens / step_times[-1],
                    "elapsed_s": state.elapsed_s,
                    "eta_s": statistics.fmean(step_times) * (n_steps - state.step),
                    "tokens_seen": state.tokens_seen,
                }
            )

            every = config.checkpoint_every_steps
            if ((state.step % every == 0) if every else epoch_end) and not last:
                checkpoint()
                saved_step = state.step

            request = should_stop()
            if group is not None:  # rank 0's answer, so the whole group ends at this step
                request = group.agree(request)
            if request in ("stop", "cancel"):
                status = "stopped" if request == "stop" else "cancelled"
                if request == "stop" and config.keep_best and evaluated_step != state.step:
                    # The weights as they stand compete for the best too.
                    stop_loss = evaluate(ctx, val_set, val_plan)
                    if stop_loss is not None:
                        state.eval_loss = stop_loss
                        record_eval(stop_loss)
                if request == "stop" and saved_step != state.step:
                    checkpoint()  # "stop" can be resumed later; "cancel" keeps what exists
                break
            if request is not None:
                reporter.log(f"ignored unknown stop request {request!r}")
            if patience_spent(state, config.early_stopping_patience) and not last:
                early_stopped_at = state.step
                reporter.log(
                    f"early stopping at step {state.step}: eval loss has not improved for "
                    f"{state.evals_without_improvement} evaluations (best {state.best_eval_loss}"
                    f" at step {state.best_step})"
                )
                break

    # --- save the adapter (PEFT format) unless cancelled: the best one, or the last ---
    adapter_path: Path | None = None
    adapter_step: int | None = None
    if status != "cancelled" and main:
        adapter_path = out_dir / "adapter"
        best = best_adapter(out_dir, state) if config.keep_best else None
        # Written aside and renamed into place: a full disk (DiskFull) leaves no half-written
        # adapter that could become a version.
        with staged_dir(adapter_path) as staged:
            if best is not None and state.best_step != state.step:
                shutil.copytree(best, staged, dirs_exist_ok=True)
                adapter_step = state.best_step
            else:
                if config.keep_best and state.best_step not in (None, state.step):
                    reporter.log(
                        f"the best adapter (step {state.best_step}) is gone: keeping the last"
                    )
                peft_model.save_pretrained(staged)
                adapter_step = state.step
        reporter.log(f"adapter saved: {adapter_path} (weights of step {adapter_step})")
    existing = checkpoint_dirs(out_dir)
    result = TrainResult(
        status=status,
        steps=state.step,
        total_steps=n_steps,
        epochs=round(state.step / per_epoch, 4),
        train_loss=state.loss_ema,
        last_train_loss=state.last_loss,
        eval_loss=state.eval_loss,
        best_step=state.best_step,
        best_eval_loss=state.best_eval_loss,
        adapter_step=adapter_step,
        early_stopped_at_step=early_stopped_at,
        tokens_seen=state.tokens_seen,
        adapter_path=adapter_path,
        checkpoint_path=existing[-1] if existing else None,
        elapsed_s=prior_elapsed + time.perf_counter() - session_start,
        peak_rss_bytes=peak_rss_bytes(),
        peak_accelerator_bytes=peak_accelerator_bytes(target),
        versions=versions(),
        info=info,
    )
    reporter.end(result)
    return result


def _log_overlength(reporter: Reporter, data_stats: dict[str, Any], config: TrainingConfig) -> None:
    """Say what happened to rows longer than max_length (the counts are also in info["data"])."""
    for split, stats in data_stats.items():
        n = stats["truncated"] + stats["dropped"].get("over_max_length", 0)
        if n:
            done = "dropped" if config.overlength.value == "drop" else "truncated"
            reporter.log(
                f"{n} of {stats['rows']} {split} rows were longer than max_length "
                f"{config.max_length} tokens: {done}"
            )


def _ema(previous: float | None, value: float) -> float:
    return value if previous is None else EMA_BETA * previous + (1 - EMA_BETA) * value
