"""Causal-LM loss on the trainable positions only, without full-vocabulary logits.

A plain `model(input_ids, labels=...)` computes fp32 logits for every position of the batch
(batch 4 x 512 x 49,152 vocab = 400 MB for SmolLM2), plus their log-softmax and gradient copies:
most of a LoRA run's memory and a good share of its time. Here the decoder runs to hidden states,
only the rows whose shifted label is not IGNORE_INDEX are kept, and the output projection +
cross-entropy run over those rows in chunks. The gradient with respect to the hidden rows is
computed in the same pass (softmax - one_hot), so each chunk's logits are freed at once and
nothing is recomputed in backward (the fused "linear cross-entropy" of Liger/Apple CCE).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from workers.ml.chat_format import IGNORE_INDEX

# Logit elements per chunk: 2**23 fp32 values = 32 MiB, ~80 MiB with the half-precision matmul
# output and gradient copies. The chunk is live at the memory peak (every activation is saved by
# then), so it is kept small: 170 rows for SmolLM2's 49,152-token vocabulary (2**25 added
# 0.3 GiB to the peak), 32 rows for a 262k vocabulary (Gemma 3). Each chunk is still one
# matmul of 170 x 576 x 49,152 = 4.8 GFLOP, far past the size where matmuls are efficient.
CHUNK_ELEMENTS = 1 << 23


def chunk_rows(vocab_size: int) -> int:
    return max(16, CHUNK_ELEMENTS // max(vocab_size, 1))


class _LinearCrossEntropy(torch.autograd.Function):
    """sum over rows of CE(transform(rows @ W.T + b), targets); gradients computed in forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        rows: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        compute_dtype: torch.dtype,
        scale: float,
        softcap: float | None,
    ) -> torch.Tensor:
        want_rows, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        want_b = bias is not None and bool(ctx.needs_input_grad[2])
        w = weight.to(compute_dtype)
        acc = torch.promote_types(compute_dtype, torch.float32)  # softmax never below fp32
        grad_rows = torch.empty_like(rows) if want_rows else None
        grad_w = torch.zeros_like(weight, dtype=acc) if want_w else None
        grad_b = torch.zeros_like(bias, dtype=acc) if want_b else None
        total = torch.zeros((), dtype=acc, device=rows.device)
        step = chunk_rows(weight.shape[0])
        for start in range(0, rows.shape[0], step):
            h = rows[start : start + step].to(compute_dtype)
            tgt = targets[start : start + step]
            logits = (h @ w.T).to(acc)
            if bias is not None:
                logits += bias.to(acc)
            if scale != 1.0:
                logits *= scale
            tanh = None
            if softcap:  # Gemma-style final_logit_softcapping: cap * tanh(logits / cap)
                tanh = torch.tanh(logits / softcap)
                logits = tanh * softcap
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, tgt[:, None]).squeeze(1)).sum()
            if grad_rows is None and grad_w is None and grad_b is None:
                continue
            # d(sum CE)/d(logits) = softmax - one_hot, built in place in the logits buffer.
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(grad.shape[0], device=grad.device), tgt] -= 1.0
            if tanh is not None:
                grad *= 1.0 - tanh * tanh
            if scale != 1.0:
                grad *= scale
            if grad_b is not None:
                grad_b += grad.sum(0)
            g = grad.to(compute_dtype)
            if grad_rows is not None:
                grad_rows[start : start + step] = g @ w
            if grad_w is not None:
                grad_w += (g.T @ h).to(acc)
        ctx.save_for_backward(grad_rows, grad_w, grad_b)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_rows, grad_w, grad_b = ctx.saved_tensors
        scaled = [None if g is None else g * grad_out.to(g.dtype) for g in (grad_rows, grad_w)]
        if scaled[1] is not None:
            scaled[1] = scaled[1].to(ctx.weight_dtype)
        gb = None if grad_b is None else grad_b * grad_out
        return scaled[0], scaled[1], gb, None, None, None, None


def _logit_transform(config: Any) -> tuple[float, float | None]:
    """(scale, softcap) a model applies to its output logits, read from known config fields."""
    scale = float(getattr(config, "logit_scale", None) or 1.0)  # Cohere multiplies
    divisor = getattr(config, "logits_scaling", None)  # Granite divides
    if divisor:
        scale /= float(divisor)
    softcap = getattr(config, "final_logit_softcapping", None)  # Gemma 2/3
    return scale, (float(softcap) if softcap else None)


def decoder_of(model: nn.Module) -> nn.Module:
    """The transformer body of a *ForCausalLM: everything before the output projection."""
    getter = getattr(model, "get_decoder", None)
    decoder = getter() if callable(getter) else None
    return decoder if decoder is not None else model.model


def masked_loss_sum(
    model: nn.Module, batch: dict[str, torch.Tensor], compute_dtype: torch.dtype
) -> tuple[torch.Tensor, int]:
    """(summed cross-entropy over the trainable positions, their count) for one batch.

    `model` is the *ForCausalLM (LoRA layers injected). Summing, not averaging, lets the caller
    normalize by the trainable tokens of a whole accumulation window.
    """
    mask = batch["attention_mask"]
    # Without padding the attention can take the causal fast path (no mask tensor at all).
    out = decoder_of(model)(
        input_ids=batch["input_ids"],
        attention_mask=None if bool(mask.all()) else mask,
        use_cache=False,
    )
    hidden = out[0]
    shifted = batch["labels"][:, 1:]
    keep = shifted != IGNORE_INDEX
    rows = hidden[:, :-1][keep]  # (trainable tokens, hidden): the only rows that need logits
    targets = shifted[keep]
    head = model.get_output_embeddings()
    scale, softcap = _logit_transform(model.config)
    with torch.autocast(rows.device.type, enabled=False):  # dtypes are explicit inside
        total = _LinearCrossEntropy.apply(
            rows, head.weight, head.bias, targets, compute_dtype, scale, softcap
        )
    return total, int(targets.numel())


@torch.no_grad()
def reference_loss_matches(
    model: nn.Module, batch: dict[str, torch.Tensor], compute_dtype: torch.dtype = torch.float32
) -> bool:
    """True when masked_loss_sum agrees with the model's own forward(labels=...) loss.

    Guards architectures whose output head does more than the transforms known above; the
    caller falls back to the full-logits loss when this is False. Run it under the training
    autocast. In fp32 both must agree to 1e-4; in half precision the two sides round logits
    differently, so only the first 2-3 significant digits can be compared (2e-2), which still
    catches a missing scale or softcap.
    """
    head_dtype = model.get_output_embeddings().weight.dtype
    exact = compute_dtype == torch.float32 and head_dtype == torch.float32
    tolerance = 1e-4 if exact else 2e-2
    was_training = model.training
    model.eval()
    try:
        ref = model(**batch, use_cache=False).loss.float()
        total, count = masked_loss_sum(model, batch, compute_dtype)
    finally:
        model.train(was_training)
    return bool(torch.isclose(total.float() / count, ref, rtol=tolerance, atol=tolerance))


def full_logits_loss_sum(
    model: nn.Module, batch: dict[str, torch.Tensor], compute_dtype: torch.dtype
) -> tuple[torch.Tensor, int]:
    """Fallback: the model's own loss (mean over the trainable tokens) times their count."""
    count = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    return model(**batch, use_cache=False).loss * count, count
