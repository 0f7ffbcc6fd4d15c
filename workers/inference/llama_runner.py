"""Lean batched decoder for Llama-family models (llama, mistral, qwen2, qwen3) with per-row LoRA.

Why not the transformers forward: at batch 1 on a CPU a 135M model spends most of a decode step
in Python and small-op overhead (module calls, cache bookkeeping, mask building, peft's
per-adapter loops), not in matmuls. This forward runs the same math with far fewer ops: q/k/v
and gate/up are fused into one matmul each, residual adds ride on addmm, RMSNorm is one
F.rms_norm, RoPE is one table lookup plus cat/mul/addcmul, and the KV cache is a SlotKVCache
written in place. The transformers model stays the source of truth: its parameters are re-bound
as views of the fused tensors (no extra memory), and tests check greedy outputs against
model.generate().

Rows are sequences; row r's cache holds its own tokens from position 0. prefill() adds one
sequence as a new row; decode() advances every row by one token in a single forward pass, each
row through its own adapter (or none) via a LoraPlan.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workers.inference.kv_cache import SlotKVCache
from workers.inference.lora import LoraAdapter, LoraBank, LoraPlan, ProjectionGroup, apply_lora

SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3")
# RoPE variants whose cos/sin depend on the position only, so one table serves every step.
STATIC_ROPE = ("default", "linear", "llama3", "yarn")
PER_LAYER = 4  # projection groups per layer: qkv, o, gate_up, down


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the lean path cannot run this model, or None when it can."""
    config = model.config.get_text_config()
    if config.model_type not in SUPPORTED_TYPES:
        return f"model type {config.model_type!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not silu"
    if getattr(config, "mlp_bias", False):
        return "MLP biases"
    if getattr(config, "use_sliding_window", False):
        return "per-layer sliding windows"
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope_type not in STATIC_ROPE:
        return f"RoPE type {rope_type!r} depends on the sequence length"
    if not hasattr(model, "model") or not hasattr(model.model, "layers"):
        return "an unexpected module layout"
    return None


@dataclass
class _Layer:
    ln1: torch.Tensor
    ln2: torch.Tensor
    qkv: torch.Tensor  # [(Hq + 2 Hkv) * hd, d]
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    gate_up: torch.Tensor  # [2 I, d]
    down: torch.Tensor
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None


def _fuse(modules: list[nn.Linear], with_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several linears; they are re-bound as views, so no copy stays."""
    weight = torch.cat([m.weight.detach() for m in modules]).contiguous()
    bias = torch.cat([m.bias.detach() for m in modules]) if with_bias else None
    start = 0
    for m in modules:
        size = m.weight.shape[0]
        m.weight = nn.Parameter(weight[start : start + size], requires_grad=False)
        if bias is not None:
            m.bias = nn.Parameter(bias[start : start + size], requires_grad=False)
        start += size
    return weight, bias


class LlamaRunner:
    """Batched prefill/decode with a slot KV cache; not thread-safe (one engine loop drives it)."""

    def __init__(self, model: nn.Module, *, max_rows: int, max_length: int) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the lean decoder cannot run this model: {reason}")
        config = model.config.get_text_config()
        weight = model.get_input_embeddings().weight
        self.dtype, self.device = weight.dtype, weight.device
        # Attention and LoRA run in fp32 on CPU: torch's CPU SDPA is 5-10x slower in bf16 than
        # in fp32 (8 rows x 256 positions: 1.4 ms vs 0.17 ms per layer) and LoRA's tiny matmuls
        # ~7x slower (14 us vs 2 us). The KV cache is fp32 there too (twice the bytes of bf16),
        # so a step never converts the cache.
        self.attn_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        self.max_rows, self.max_length = max_rows, max_length
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.hidden, self.eps = config.hidden_size, config.rms_norm_eps
        self.intermediate = config.intermediate_size
        self.window: int | None = getattr(config, "sliding_window", None)
        if config.model_type != "mistral" or (self.window or 0) >= max_length:
            self.window = None
        self.embed = weight
        self.final_norm = model.model.norm.weight
        self.lm_head = model.get_output_embeddings().weight
        self.layers: list[_Layer] = []
        groups: list[ProjectionGroup] = []
        for index, block in enumerate(model.model.layers):
            attn, mlp, name = block.self_attn, block.mlp, f"model.layers.{index}"
            qkv, qkv_bias = _fuse(
                [attn.q_proj, attn.k_proj, attn.v_proj], attn.q_proj.bias is not None
            )
            gate_up, _ = _fuse([mlp.gate_proj, mlp.up_proj], False)
            q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
            self.layers.append(
                _Layer(
                    ln1=block.input_layernorm.weight,
                    ln2=block.post_attention_layernorm.weight,
                    qkv=qkv,
                    qkv_bias=qkv_bias,
                    o=attn.o_proj.weight,
                    o_bias=attn.o_proj.bias,
                    gate_up=gate_up,
                    down=mlp.down_proj.weight,
                    q_norm=None if q_norm is None else q_norm.weight.to(self.attn_dtype),
                    k_norm=None if k_norm is None else k_norm.weight.to(self.attn_dtype),
                )
            )
            q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
            groups += [
                ProjectionGroup(
                    self.hidden,
                    (
                        (f"{name}.self_attn.q_proj", q_out),
                        (f"{name}.self_attn.k_proj", kv_out),
                        (f"{name}.self_attn.v_proj", kv_out),
                    ),
                ),
                ProjectionGroup(q_out, ((f"{name}.self_attn.o_proj", self.hidden),)),
                ProjectionGroup(
                    self.hidden,
                    (
                        (f"{name}.mlp.gate_proj", self.intermediate),
                        (f"{name}.mlp.up_proj", self.intermediate),
                    ),
                ),
                ProjectionGroup(self.intermediate, ((f"{name}.mlp.down_proj", self.hidden),)),
            ]
        groups.append(ProjectionGroup(self.hidden, (("lm_head", self.lm_head.shape[0]),)))
        self.bank = LoraBank(groups, dtype=self.attn_dtype, device=self.device)
        self.cache = SlotKVCache(
            len(self.layers), self.kv_heads, self.head_dim,
            dtype=self.attn_dtype, device=self.device, max_length=max_length,
        )  # fmt: skip
        self._cos, self._sin = self._rope_tables(model, max_length)
        self.lengths: list[int] = []  # tokens cached per row
        self.row_adapters: list[str | None] = []
        self._plan: LoraPlan | None = None
        self._plan_stale = True

    def _rope_tables(self, model: nn.Module, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        # transformers' own rotary module computes the tables, so every static RoPE variant
        # (scaling, attention factor) matches the reference forward.
        positions = torch.arange(length, device=self.device)[None]
        probe = torch.zeros(1, dtype=self.attn_dtype, device=self.device)
        cos, sin = model.model.rotary_emb(probe, positions)
        half = self.head_dim // 2
        sign = torch.ones(self.head_dim, dtype=self.attn_dtype, device=self.device)
        sign[:half] = -1  # rotate_half(x) * sin == cat(x2, x1) * (sign * sin)
        return cos[0].contiguous(), (sin[0] * sign).contiguous()

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def attach(self, adapter: LoraAdapter) -> int:
        """Add an adapter for later rows; returns its bytes. Raises UnsupportedAdapter."""
        nbytes = self.bank.add(adapter)
        self._plan_stale = True
        return nbytes

    def detach(self, adapter_id: str) -> None:
        if adapter_id in self.row_adapters:
            raise RuntimeError(f"adapter {adapter_id!r} is in use by an active sequence")
        self.bank.remove(adapter_id)
        self._plan_stale = True

    @torch.inference_mode()
    def remove_row(self, row: int) -> None:
        """Drop a sequence; the last row moves into its place (callers mirror this order)."""
        last = self.rows - 1
        if row != last:
            self.cache.move_row(last, row, self.lengths[last])
            self.lengths[row], self.row_adapters[row] = self.lengths[last], self.row_adapters[last]
        self.lengths.pop()
        self.row_adapters.pop()
        self._plan_stale = True

    def clear(self) -> None:
        self.lengths, self.row_adapters = [], []
        self._plan_stale = True

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = self.head_dim // 2
        swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
        return torch.addcmul(x * cos, swapped, sin)

    @torch.inference_mode()
    def prefill(self, prompt_ids: list[int], adapter_id: str | None) -> torch.Tensor:
        """Add a sequence as row `rows`; returns float32 logits [vocab] for its next token."""
        row, length = self.rows, len(prompt_ids)
        if row >= self.max_rows:
            raise RuntimeError("no free batch row")
        if adapter_id is not None and adapter_id not in self.bank:
            raise RuntimeError(f"adapter {adapter_id!r} is not attached")
        self.cache.reserve(row + 1, length)
        tokens = torch.tensor(prompt_ids, device=self.device)
        mask = None
        if self.window is not None and length > self.window:
            q = torch.arange(length, device=self.device)
            mask = (q[None, :] <= q[:, None]) & (q[None, :] > q[:, None] - self.window)
        logits = self._forward(
            tokens, self._cos[:length, None], self._sin[:length, None],
            self.bank.plan([adapter_id], tokens_per_row=length), prefill=(row, length, mask),
        )  # fmt: skip
        self.lengths.append(length)
        self.row_adapters.append(adapter_id)
        self._plan_stale = True
        return logits[0]

    @torch.inference_mode()
    def decode(self, tokens: list[int]) -> torch.Tensor:
        """Feed one token per row (row order); returns float32 logits [rows, vocab]."""
        rows = self.rows
        if len(tokens) != rows:
            raise ValueError(f"{len(tokens)} tokens for {rows} rows")
        longest = max(self.lengths) + 1
        self.cache.reserve(rows, longest)
        positions = torch.tensor(self.lengths, device=self.device)
        mask = None
        if min(self.lengths) != longest - 1 or (self.window is not None and longest > self.window):
            # Rows of different lengths (or a sliding window): hide each row's unused tail.
            keys = torch.arange(longest, device=self.device)[None, :]
            mask = keys <= positions[:, None]
            if self.window is not None:
                mask &= keys > positions[:, None] - self.window
            mask = mask[:, None, None, :]
        if self._plan_stale:
            self._plan = self.bank.plan(self.row_adapters)
            self._plan_stale = False
        logits = self._forward(
            torch.tensor(tokens, device=self.device), self._cos[positions][:, None],
            self._sin[positions][:, None], self._plan, decode=(positions, longest, mask),
        )  # fmt: skip
        self.lengths = [n + 1 for n in self.lengths]
        return logits

    def _forward(
        self,
        tokens: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        plan: LoraPlan | None,
        *,
        prefill: tuple[int, int, torch.Tensor | None] | None = None,
        decode: tuple[torch.Tensor, int, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Hidden states of `tokens` [N] through every layer; float32 logits of the last ones."""
        entries = plan.entries if plan is not None else (None,) * len(self.bank.groups)
        heads, kv_heads, hd, d = self.heads, self.kv_heads, self.head_dim, self.hidden
        count = tokens.shape[0]
        q_size, kv_size = heads * hd, kv_heads * hd
        arange = torch.arange(count, device=self.device)
        x = F.embedding(tokens, self.embed)
        for index, layer in enumerate(self.layers):
            slot = index * PER_LAYER
            keys, values = self.cache.keys[index], self.cache.values[index]
            h = F.rms_norm(x, (d,), layer.ln1, self.eps)
            qkv = apply_lora(F.linear(h, layer.qkv, layer.qkv_bias), h, entries[slot])
            qkv = qkv.to(self.attn_dtype)
            v = qkv[:, q_size + kv_size :].view(count, kv_heads, hd)
            if layer.q_norm is not None and layer.k_norm is not None:
                q = qkv[:, :q_size].view(count, heads, hd)
                k = qkv[:, q_size : q_size + kv_size].view(count, kv_heads, hd)
                q = F.rms_norm(q, (hd,), layer.q_norm, self.eps)
                k = F.rms_norm(k, (hd,), layer.k_norm, self.eps)
                qk = torch.cat((q, k), dim=1)
            else:
                qk = qkv[:, : q_size + kv_size].view(count, heads + kv_heads, hd)
            # One RoPE for queries and keys together: they are adjacent in the fused output.
            qk = self._rope(qk, cos, sin)
            q, k = qk[:, :heads], qk[:, heads:]
            if decode is not None:
                positions, longest, mask = decode
                keys[arange, :, positions] = k
                values[arange, :, positions] = v
                out = F.scaled_dot_product_attention(
                    q[:, :, None], keys[:count, :, :longest], values[:count, :, :longest],
                    attn_mask=mask, enable_gqa=True,
                )  # fmt: skip
                attn = out.reshape(count, q_size).to(self.dtype)
            else:
                assert prefill is not None
                row, length, mask = prefill
                keys[row, :, :length] = k.transpose(0, 1)
                values[row, :, :length] = v.transpose(0, 1)
                out = F.scaled_dot_product_attention(
                    q.transpose(0, 1)[None], keys[row : row + 1, :, :length],
                    values[row : row + 1, :, :length], attn_mask=mask,
                    is_causal=mask is None, enable_gqa=True,
                )  # fmt: skip
                attn = out[0].transpose(0, 1).reshape(count, q_size).to(self.dtype)
            x = torch.addmm(x, attn, layer.o.T)
            if layer.o_bias is not None:
                x += layer.o_bias
            apply_lora(x, attn, entries[slot + 1])
            h = F.rms_norm(x, (d,), layer.ln2, self.eps)
            gate_up = apply_lora(h @ layer.gate_up.T, h, entries[slot + 2])
            act = F.silu(gate_up[:, : self.intermediate]) * gate_up[:, self.intermediate :]
            x = apply_lora(torch.addmm(x, act, layer.down.T), act, entries[slot + 3])
        if prefill is not None:
            x = x[-1:]  # only the last prompt position predicts a token
        h = F.rms_norm(x, (d,), self.final_norm, self.eps)
        return apply_lora(h @ self.lm_head.T, h, entries[-1]).float()
