"""Lean batched runner for Llama-like decoders with per-row LoRA (families: llama_weights.py).

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
score() runs a whole sequence the same way in a scratch row and keeps every position's logits
(evaluation's perplexity), so evaluation and chat share one forward.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workers.inference.kv_cache import SlotKVCache
from workers.inference.llama_weights import PER_LAYER, prepare_weights
from workers.inference.lora import LoraAdapter, LoraBank, LoraPlan, project
from workers.inference.runner import WholePrefill

IDLE_CAPACITY = 1024  # cache positions kept allocated while no sequence is active
SCORE_CHUNK = 512  # positions per forward pass when scoring a whole sequence


# Per layer kind, for the tokens of one forward pass: RoPE cos, RoPE sin, attention mask.
_Context = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


@dataclass
class _Staging:
    ids: list[int]
    adapter_id: str | None
    done: int = 0  # prompt tokens already in the cache


class LlamaRunner(WholePrefill):
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
        self.bank = LoraBank(
            self.w.groups, dtype=self.attn_dtype, device=device,
            base_weight=lambda name: model.get_submodule(name).weight,  # views of the fused weights
        )  # fmt: skip
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
        self._shrink_when_idle()

    def clear(self) -> None:
        self.lengths, self.row_adapters, self._staging = [], [], None
        self._plan_stale = True
        self._shrink_when_idle()

    def _shrink_when_idle(self) -> None:
        # The cache only grows while busy (every row gets the longest row's capacity); once
        # the batch is empty, give back a large one instead of holding it for the next burst.
        if not self.lengths and self._staging is None and self.cache.capacity > IDLE_CAPACITY:
            self.cache.release()

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
        last = end == len(staging.ids)
        logits = self._forward(
            torch.tensor(chunk, device=self.device), self._chunk_contexts(start, end),
            self.bank.plan([staging.adapter_id]), prefill=(row, start), logits=last,
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

    def _chunk_contexts(self, start: int, end: int) -> dict[str, _Context]:
        """Per layer kind, the contexts of positions start..end-1 of one row (a prefill chunk)."""
        contexts: dict[str, _Context] = {}
        for kind, (cos, sin) in self.w.tables.items():
            window = self.w.windows[kind]
            mask = None
            if start > 0 or (window is not None and end > window):
                # Causal with an offset for the cached part of the prompt (SDPA's is_causal
                # assumes none), limited to the window where there is one.
                query = torch.arange(start, end, device=self.device)[:, None]
                key = torch.arange(end, device=self.device)[None, :]
                mask = key <= query
                if window is not None:
                    mask &= key > query - window
            contexts[kind] = (cos[start:end, None], sin[start:end, None], mask)
        return contexts

    @torch.inference_mode()
    def score(self, ids: list[int], adapter_id: str | None) -> torch.Tensor:
        """Logits [len(ids), vocab] at every position of `ids` (teacher forcing), float32.

        The sequence runs as a prefill into a scratch cache row: the row after the active rows,
        or after the staged one while a sequence is being prefilled. Nothing reads that row
        (decode reads rows 0..rows-1, prefill_step the staged row), so active and staged
        sequences are untouched; it needs a free row (max_rows), else RuntimeError. Chunks of
        SCORE_CHUNK positions bound the activations (not the returned logits).
        """
        if adapter_id is not None and adapter_id not in self.bank:
            raise RuntimeError(f"adapter {adapter_id!r} is not attached")
        if not 0 < len(ids) <= self.max_length:
            raise ValueError(f"scoring needs 1 to {self.max_length} tokens")
        row = self.rows + int(self._staging is not None)
        if row >= self.max_rows:
            raise RuntimeError("no free batch row to score a sequence in")
        plan = self.bank.plan([adapter_id])
        self.cache.reserve(row + 1, len(ids))
        parts: list[torch.Tensor] = []
        for start in range(0, len(ids), SCORE_CHUNK):
            end = min(start + SCORE_CHUNK, len(ids))
            logits = self._forward(
                torch.tensor(ids[start:end], device=self.device),
                self._chunk_contexts(start, end), plan, prefill=(row, start), all_positions=True,
            )  # fmt: skip
            assert logits is not None
            parts.append(logits)
        self._shrink_when_idle()
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    @torch.inference_mode()
    def decode(self, tokens: list[int]) -> torch.Tensor:
        rows = self.rows
        if len(tokens) != rows or not rows:
            raise ValueError(f"{len(tokens)} tokens for {rows} rows")
        longest = max(self.lengths) + 1
        self.cache.reserve(rows, longest)
        positions = torch.tensor(self.lengths, device=self.device)
        keys = torch.arange(longest, device=self.device)[None, :]
        ragged = min(self.lengths) != longest - 1
        contexts: dict[str, _Context] = {}
        for kind, (cos, sin) in self.w.tables.items():
            window = self.w.windows[kind]
            mask = None
            if ragged or (window is not None and longest > window):
                # Rows of different lengths (or a window): hide what each row must not see.
                mask = keys <= positions[:, None]
                if window is not None:
                    mask &= keys > positions[:, None] - window
                mask = mask[:, None, None, :]
            contexts[kind] = (cos[positions][:, None], sin[positions][:, None], mask)
        if self._plan_stale:
            self._plan = self.bank.plan(self.row_adapters)
            self._plan_stale = False
        logits = self._forward(
            torch.tensor(tokens, device=self.device), contexts, self._plan,
            decode=(positions, longest),
        )  # fmt: skip
        self.lengths = [n + 1 for n in self.lengths]
        assert logits is not None
        return logits

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.w.head_dim // 2
        swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
        return torch.addcmul(x * cos, swapped, sin)

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.w.gemma:  # Gemma normalises and scales in fp32, then rounds once
            return F.rms_norm(x.float(), (x.shape[-1],), weight, self.w.eps).to(x.dtype)
        return F.rms_norm(x, (x.shape[-1],), weight, self.w.eps)

    def _forward(
        self,
        tokens: torch.Tensor,
        contexts: dict[str, _Context],
        plan: LoraPlan | None,
        *,
        prefill: tuple[int, int] | None = None,
        decode: tuple[torch.Tensor, int] | None = None,
        logits: bool = True,
        all_positions: bool = False,
    ) -> torch.Tensor | None:
        """Run `tokens` [N] through every layer; float32 logits of the last token(s).

        prefill=(row, start): N consecutive prompt tokens of one row from position `start`;
        logits of the last one only, or of all N with all_positions (scoring).
        decode=(positions, longest): one token for each of N rows at its own position.
        contexts: per layer kind, (cos, sin, attention mask) for these tokens.
        """
        w = self.w
        entries = plan.entries if plan is not None else (None,) * len(w.groups)
        heads, kv_heads, hd = w.heads, w.kv_heads, w.head_dim
        count = tokens.shape[0]
        q_size, kv_size = heads * hd, kv_heads * hd
        rows = torch.arange(count, device=self.device)
        x = F.embedding(tokens, w.embed)
        if w.embed_scale is not None:
            x = x * w.embed_scale
        for index, layer in enumerate(w.layers):
            slot = index * PER_LAYER
            cos, sin, mask = contexts[layer.kind]
            keys, values = self.cache.keys[index], self.cache.values[index]
            h = self._norm(x, layer.ln1)
            qkv = project(h, layer.qkv, entries[slot], bias=layer.qkv_bias)
            qkv = qkv.to(self.attn_dtype)
            v = qkv[:, q_size + kv_size :].view(count, kv_heads, hd)
            if layer.q_norm is not None and layer.k_norm is not None:
                q = F.rms_norm(qkv[:, :q_size].view(count, heads, hd), (hd,), layer.q_norm, w.eps)
                k = qkv[:, q_size : q_size + kv_size].view(count, kv_heads, hd)
                qk = torch.cat((q, F.rms_norm(k, (hd,), layer.k_norm, w.eps)), dim=1)
            else:
                qk = qkv[:, : q_size + kv_size].view(count, heads + kv_heads, hd)
            # One RoPE for queries and keys together: they are adjacent in the fused output.
            qk = self._rope(qk, cos, sin)
            q, k = qk[:, :heads], qk[:, heads:]
            if decode is not None:
                positions, longest = decode
                keys[rows, :, positions] = k
                values[rows, :, positions] = v
                out = F.scaled_dot_product_attention(
                    q[:, :, None], keys[:count, :, :longest], values[:count, :, :longest],
                    attn_mask=mask, enable_gqa=True, scale=w.attn_scale,
                )  # fmt: skip
                attn = out.reshape(count, q_size).to(self.dtype)
            else:
                assert prefill is not None
                row, start = prefill
                end = start + count
                keys[row, :, start:end] = k.transpose(0, 1)
                values[row, :, start:end] = v.transpose(0, 1)
                out = F.scaled_dot_product_attention(
                    q.transpose(0, 1)[None], keys[row : row + 1, :, :end],
                    values[row : row + 1, :, :end], attn_mask=mask,
                    is_causal=mask is None, enable_gqa=True, scale=w.attn_scale,
                )  # fmt: skip
                attn = out[0].transpose(0, 1).reshape(count, q_size).to(self.dtype)
            if layer.post_attn_norm is None:
                x = project(attn, layer.o, entries[slot + 1], bias=layer.o_bias, residual=x)
            else:
                o = project(attn, layer.o, entries[slot + 1], bias=layer.o_bias)
                x = x + self._norm(o, layer.post_attn_norm)
            h = self._norm(x, layer.ln2)
            gate_up = project(h, layer.gate_up, entries[slot + 2])
            gate, up = gate_up[:, : w.intermediate], gate_up[:, w.intermediate :]
            act = (F.gelu(gate, approximate="tanh") if w.gemma else F.silu(gate)) * up
            if layer.post_ff_norm is None:
                x = project(act, layer.down, entries[slot + 3], residual=x)
            else:
                down = project(act, layer.down, entries[slot + 3])
                x = x + self._norm(down, layer.post_ff_norm)
        if not logits:
            return None
        if prefill is not None and not all_positions:
            x = x[-1:]  # only the last prompt position predicts a token
        h = self._norm(x, w.final_norm)
        return project(h, w.lm_head, entries[-1]).float()
