"""Lean batched decoder for Llama-family models with per-row LoRA (see llama_weights.py).

Why not the transformers forward: at batch 1 on a CPU a 135M model spends much of a decode step
in Python and small-op overhead (module calls, cache bookkeeping, mask building, peft's
per-adapter loops) rather than in matmuls. This forward runs the same math with far fewer ops:
fused q/k/v and gate/up matmuls, residual adds inside addmm, one F.rms_norm per norm, one RoPE
(cat + mul + addcmul) for queries and keys together, and a SlotKVCache written in place. Tests
check its greedy output against model.generate().

Rows are sequences, row r's cache holding its tokens from position 0. A new sequence is staged
in the row after the last active one and prefilled in chunks (begin + prefill_step), so a long
prompt never stalls the other streams for more than one chunk; decode() then advances every
active row by one token in one forward pass, each row through its own adapter (or none).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workers.inference.kv_cache import SlotKVCache
from workers.inference.llama_weights import PER_LAYER, prepare_weights
from workers.inference.lora import LoraAdapter, LoraBank, LoraPlan, apply_lora


@dataclass
class _Staging:
    ids: list[int]
    adapter_id: str | None
    done: int = 0  # prompt tokens already in the cache


class LlamaRunner:
    """Runner (see runner.py) for llama/mistral/qwen2/qwen3; not thread-safe."""

    def __init__(self, model: nn.Module, *, max_rows: int, max_length: int) -> None:
        device = model.get_input_embeddings().weight.device
        self.dtype = model.get_input_embeddings().weight.dtype
        self.device = device
        # Attention and LoRA run in fp32 on CPU: torch's CPU SDPA is 5-10x slower in bf16 than
        # in fp32 (8 rows x 256 positions: 1.4 ms vs 0.17 ms per layer) and LoRA's tiny matmuls
        # ~7x slower (14 us vs 2 us). The KV cache is fp32 there too (twice the bytes of bf16),
        # so a step never converts the cache.
        self.attn_dtype = torch.float32 if device.type == "cpu" else self.dtype
        self.max_rows, self.max_length = max_rows, max_length
        self.w = prepare_weights(model, attn_dtype=self.attn_dtype, max_length=max_length)
        self.bank = LoraBank(self.w.groups, dtype=self.attn_dtype, device=device)
        self.cache = SlotKVCache(
            len(self.w.layers), self.w.kv_heads, self.w.head_dim,
            dtype=self.attn_dtype, device=device, max_length=max_length,
        )  # fmt: skip
        self.lengths: list[int] = []  # tokens cached per active row
        self.row_adapters: list[str | None] = []
        self._staging: _Staging | None = None
        self._plan: LoraPlan | None = None
        self._plan_stale = True

    @property
    def rows(self) -> int:
        return len(self.lengths)

    @property
    def prefilling(self) -> bool:
        return self._staging is not None

    def attach(self, adapter: LoraAdapter) -> int:
        nbytes = self.bank.add(adapter)
        self._plan_stale = True
        return nbytes

    def detach(self, adapter_id: str) -> None:
        staged = self._staging.adapter_id if self._staging else None
        if adapter_id in self.row_adapters or adapter_id == staged:
            raise RuntimeError(f"adapter {adapter_id!r} is in use by an active sequence")
        self.bank.remove(adapter_id)
        self._plan_stale = True

    @torch.inference_mode()
    def remove_row(self, row: int) -> None:
        last = self.rows - 1
        if row != last:
            self.cache.move_row(last, row, self.lengths[last])
            self.lengths[row], self.row_adapters[row] = self.lengths[last], self.row_adapters[last]
        self.lengths.pop()
        self.row_adapters.pop()
        if self._staging is not None and self._staging.done:
            self.cache.move_row(last + 1, last, self._staging.done)  # the staged row follows
        self._plan_stale = True

    def clear(self) -> None:
        self.lengths, self.row_adapters, self._staging = [], [], None
        self._plan_stale = True

    def begin(self, prompt_ids: list[int], adapter_id: str | None) -> None:
        if self._staging is not None or self.rows >= self.max_rows:
            raise RuntimeError("no free batch row")
        if adapter_id is not None and adapter_id not in self.bank:
            raise RuntimeError(f"adapter {adapter_id!r} is not attached")
        if not 0 < len(prompt_ids) <= self.max_length:
            raise ValueError(f"a prompt needs 1 to {self.max_length} tokens")
        self._staging = _Staging(list(prompt_ids), adapter_id)

    def abort_prefill(self) -> None:
        self._staging = None

    @torch.inference_mode()
    def prefill_step(self, max_tokens: int) -> torch.Tensor | None:
        staging = self._staging
        if staging is None:
            raise RuntimeError("no sequence is being prefilled")
        row, start = self.rows, staging.done
        chunk = staging.ids[start : start + max_tokens]
        end = start + len(chunk)
        self.cache.reserve(row + 1, end)
        mask = None
        window = self.w.window
        if start > 0 or (window is not None and end > window):
            # Causal with an offset for the cached part of the prompt (SDPA's is_causal
            # assumes no offset), limited to the window where there is one.
            query = torch.arange(start, end, device=self.device)[:, None]
            key = torch.arange(end, device=self.device)[None, :]
            mask = key <= query
            if window is not None:
                mask &= key > query - window
        last = end == len(staging.ids)
        logits = self._forward(
            torch.tensor(chunk, device=self.device), self.w.cos[start:end, None],
            self.w.sin[start:end, None], self.bank.plan([staging.adapter_id]),
            prefill=(row, start, mask), logits=last,
        )  # fmt: skip
        staging.done = end
        if not last:
            return None
        self.lengths.append(end)
        self.row_adapters.append(staging.adapter_id)
        self._staging = None
        self._plan_stale = True
        assert logits is not None
        return logits[0]

    def prefill(self, prompt_ids: list[int], adapter_id: str | None) -> torch.Tensor:
        self.begin(prompt_ids, adapter_id)
        try:
            while (logits := self.prefill_step(self.max_length)) is None:
                pass
        except BaseException:
            self.abort_prefill()
            raise
        return logits

    @torch.inference_mode()
    def decode(self, tokens: list[int]) -> torch.Tensor:
        rows = self.rows
        if len(tokens) != rows or not rows:
            raise ValueError(f"{len(tokens)} tokens for {rows} rows")
        longest = max(self.lengths) + 1
        self.cache.reserve(rows, longest)
        positions = torch.tensor(self.lengths, device=self.device)
        window = self.w.window
        mask = None
        if min(self.lengths) != longest - 1 or (window is not None and longest > window):
            # Rows of different lengths (or a sliding window): hide each row's unused tail.
            keys = torch.arange(longest, device=self.device)[None, :]
            mask = keys <= positions[:, None]
            if window is not None:
                mask &= keys > positions[:, None] - window
            mask = mask[:, None, None, :]
        if self._plan_stale:
            self._plan = self.bank.plan(self.row_adapters)
            self._plan_stale = False
        logits = self._forward(
            torch.tensor(tokens, device=self.device), self.w.cos[positions][:, None],
            self.w.sin[positions][:, None], self._plan, decode=(positions, longest, mask),
        )  # fmt: skip
        self.lengths = [n + 1 for n in self.lengths]
        assert logits is not None
        return logits

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.w.head_dim // 2
        swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
        return torch.addcmul(x * cos, swapped, sin)

    def _forward(
        self,
        tokens: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        plan: LoraPlan | None,
        *,
        prefill: tuple[int, int, torch.Tensor | None] | None = None,
        decode: tuple[torch.Tensor, int, torch.Tensor | None] | None = None,
        logits: bool = True,
    ) -> torch.Tensor | None:
        """Run `tokens` [N] through every layer; float32 logits of the last token(s).

        prefill=(row, start, mask): N consecutive prompt tokens of one row from `start`.
        decode=(positions, longest, mask): one token for each of N rows at its own position.
        """
        w = self.w
        entries = plan.entries if plan is not None else (None,) * len(w.groups)
        heads, kv_heads, hd, d = w.heads, w.kv_heads, w.head_dim, w.hidden
        count = tokens.shape[0]
        q_size, kv_size = heads * hd, kv_heads * hd
        rows = torch.arange(count, device=self.device)
        x = F.embedding(tokens, w.embed)
        for index, layer in enumerate(w.layers):
            slot = index * PER_LAYER
            keys, values = self.cache.keys[index], self.cache.values[index]
            h = F.rms_norm(x, (d,), layer.ln1, w.eps)
            qkv = apply_lora(F.linear(h, layer.qkv, layer.qkv_bias), h, entries[slot])
            qkv = qkv.to(self.attn_dtype)
            v = qkv[:, q_size + kv_size :].view(count, kv_heads, hd)
            if layer.q_norm is not None and layer.k_norm is not None:
                q = qkv[:, :q_size].view(count, heads, hd)
                k = qkv[:, q_size : q_size + kv_size].view(count, kv_heads, hd)
                q = F.rms_norm(q, (hd,), layer.q_norm, w.eps)
                k = F.rms_norm(k, (hd,), layer.k_norm, w.eps)
                qk = torch.cat((q, k), dim=1)
            else:
                qk = qkv[:, : q_size + kv_size].view(count, heads + kv_heads, hd)
            # One RoPE for queries and keys together: they are adjacent in the fused output.
            qk = self._rope(qk, cos, sin)
            q, k = qk[:, :heads], qk[:, heads:]
            if decode is not None:
                positions, longest, mask = decode
                keys[rows, :, positions] = k
                values[rows, :, positions] = v
                out = F.scaled_dot_product_attention(
                    q[:, :, None], keys[:count, :, :longest], values[:count, :, :longest],
                    attn_mask=mask, enable_gqa=True,
                )  # fmt: skip
                attn = out.reshape(count, q_size).to(self.dtype)
            else:
                assert prefill is not None
                row, start, mask = prefill
                end = start + count
                keys[row, :, start:end] = k.transpose(0, 1)
                values[row, :, start:end] = v.transpose(0, 1)
                out = F.scaled_dot_product_attention(
                    q.transpose(0, 1)[None], keys[row : row + 1, :, :end],
                    values[row : row + 1, :, :end], attn_mask=mask,
                    is_causal=mask is None, enable_gqa=True,
                )  # fmt: skip
                attn = out[0].transpose(0, 1).reshape(count, q_size).to(self.dtype)
            x = torch.addmm(x, attn, layer.o.T)
            if layer.o_bias is not None:
                x += layer.o_bias
            apply_lora(x, attn, entries[slot + 1])
            h = F.rms_norm(x, (d,), layer.ln2, w.eps)
            gate_up = apply_lora(h @ layer.gate_up.T, h, entries[slot + 2])
            act = F.silu(gate_up[:, : w.intermediate]) * gate_up[:, w.intermediate :]
            x = apply_lora(torch.addmm(x, act, layer.down.T), act, entries[slot + 3])
        if not logits:
            return None
        if prefill is not None:
            x = x[-1:]  # only the last prompt position predicts a token
        h = F.rms_norm(x, (d,), w.final_norm, w.eps)
        return apply_lora(h @ w.lm_head.T, h, entries[-1]).float()
