"""Llama-family weights rearranged for the lean decoder (llama, mistral, qwen2, qwen3).

q/k/v and gate/up are concatenated so each is one matmul. The transformers modules are re-bound
to views of the fused tensors, so the model keeps working (and is what tests compare against)
and no second copy of the weights stays in memory. RoPE tables come from the model's own rotary
module, so every position-only RoPE variant (linear, llama3, yarn scaling) matches exactly.
"""

from dataclasses import dataclass

import torch
from torch import nn

from workers.inference.lora import ProjectionGroup

SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3")
# RoPE variants whose cos/sin depend on the position only, so one table serves every step.
STATIC_ROPE = ("default", "linear", "llama3", "yarn")
PER_LAYER = 4  # LoRA projection groups per layer: qkv, o, gate_up, down (then lm_head last)


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the lean decoder cannot run this model, or None when it can."""
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
class LayerWeights:
    ln1: torch.Tensor
    ln2: torch.Tensor
    qkv: torch.Tensor  # [(Hq + 2 Hkv) * hd, d]
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    gate_up: torch.Tensor  # [2 I, d]
    down: torch.Tensor
    q_norm: torch.Tensor | None  # qwen3's per-head norms, in the attention dtype
    k_norm: torch.Tensor | None


@dataclass
class LlamaWeights:
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    eps: float
    window: int | None  # mistral's sliding window, None when it covers the whole context
    embed: torch.Tensor
    final_norm: torch.Tensor
    lm_head: torch.Tensor
    layers: list[LayerWeights]
    groups: list[ProjectionGroup]  # PER_LAYER per layer, in layer order, then lm_head
    cos: torch.Tensor  # [max_length, head_dim], attention dtype
    sin: torch.Tensor  # sin with rotate_half's sign folded in: rotate_half(x)*sin == swap(x)*sin


def _fuse(modules: list[nn.Linear], with_bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (and bias) for several linears, which are re-bound as views of it."""
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


def _groups(index: int, hidden: int, q_out: int, kv_out: int, inter: int) -> list[ProjectionGroup]:
    name = f"model.layers.{index}"
    attn, mlp = f"{name}.self_attn", f"{name}.mlp"
    return [
        ProjectionGroup(
            hidden,
            ((f"{attn}.q_proj", q_out), (f"{attn}.k_proj", kv_out), (f"{attn}.v_proj", kv_out)),
        ),
        ProjectionGroup(q_out, ((f"{attn}.o_proj", hidden),)),
        ProjectionGroup(hidden, ((f"{mlp}.gate_proj", inter), (f"{mlp}.up_proj", inter))),
        ProjectionGroup(inter, ((f"{mlp}.down_proj", hidden),)),
    ]


def prepare_weights(model: nn.Module, *, attn_dtype: torch.dtype, max_length: int) -> LlamaWeights:
    """Fuse a supported model's weights (in place) and build its RoPE tables."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"the lean decoder cannot run this model: {reason}")
    config = model.config.get_text_config()
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    hidden, inter = config.hidden_size, config.intermediate_size
    window = getattr(config, "sliding_window", None)
    if config.model_type != "mistral" or (window or 0) >= max_length:
        window = None  # qwen configs carry a window they do not use
    layers, groups = [], []
    for index, block in enumerate(model.model.layers):
        attn, mlp = block.self_attn, block.mlp
        projections = [attn.q_proj, attn.k_proj, attn.v_proj]
        qkv, qkv_bias = _fuse(projections, attn.q_proj.bias is not None)
        gate_up, _ = _fuse([mlp.gate_proj, mlp.up_proj], False)
        q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
        layers.append(
            LayerWeights(
                ln1=block.input_layernorm.weight,
                ln2=block.post_attention_layernorm.weight,
                qkv=qkv,
                qkv_bias=qkv_bias,
                o=attn.o_proj.weight,
                o_bias=attn.o_proj.bias,
                gate_up=gate_up,
                down=mlp.down_proj.weight,
                q_norm=None if q_norm is None else q_norm.weight.to(attn_dtype),
                k_norm=None if k_norm is None else k_norm.weight.to(attn_dtype),
            )
        )
        groups += _groups(index, hidden, heads * head_dim, kv_heads * head_dim, inter)
    lm_head = model.get_output_embeddings().weight
    groups.append(ProjectionGroup(hidden, (("lm_head", lm_head.shape[0]),)))
    embed = model.get_input_embeddings().weight
    positions = torch.arange(max_length, device=embed.device)[None]
    probe = torch.zeros(1, dtype=attn_dtype, device=embed.device)
    with torch.no_grad():
        cos, sin = model.model.rotary_emb(probe, positions)
    sign = torch.ones(head_dim, dtype=attn_dtype, device=embed.device)
    sign[: head_dim // 2] = -1
    return LlamaWeights(
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        hidden=hidden,
        intermediate=inter,
        eps=config.rms_norm_eps,
        window=window,
        embed=embed,
        final_norm=model.model.norm.weight,
        lm_head=lm_head,
        layers=layers,
        groups=groups,
        cos=cos[0].contiguous(),
        sin=(sin[0] * sign).contiguous(),
    )
