"""Decoder weights rearranged for the lean runner: llama, mistral, qwen2, qwen3 and gemma3_text.

q/k/v and gate/up are concatenated so each is one matmul. The transformers modules are re-bound
to views of the fused tensors, so the model keeps working (tests compare against it) and no
second copy of the weights stays in memory. RoPE tables come from the model's own rotary module,
so position-only RoPE variants (linear, llama3, yarn scaling, Gemma's local/global bases) match.
Gemma 3 differs in ways captured here as data: scaled embeddings, (1 + w) RMSNorm weights, four
norms per layer, per-head q/k norms, a query scale, tanh-GELU, and sliding-window layers with
their own RoPE base.
"""

from dataclasses import dataclass

import torch
from torch import nn

from workers.inference.lora import ProjectionGroup

SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")
# RoPE variants whose cos/sin depend on the position only, so one table serves every step.
STATIC_ROPE = ("default", "linear", "llama3", "yarn")
PER_LAYER = 4  # LoRA projection groups per layer: qkv, o, gate_up, down (then lm_head last)
FULL, SLIDING = "full_attention", "sliding_attention"


def _rope_types(config: object) -> list[str]:
    params = getattr(config, "rope_parameters", None) or {}
    if all(isinstance(v, dict) for v in params.values()) and params:
        return [str(v.get("rope_type", "default")) for v in params.values()]  # per layer type
    return [str(params.get("rope_type", "default"))]


def unsupported_reason(model: nn.Module) -> str | None:
    """Why the lean runner cannot run this model, or None when it can."""
    config = model.config.get_text_config()
    kind = config.model_type
    if kind not in SUPPORTED_TYPES:
        return f"model type {kind!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "silu")
    if act != ("gelu_pytorch_tanh" if kind == "gemma3_text" else "silu"):
        return f"activation {act!r}"
    if getattr(config, "mlp_bias", False):
        return "MLP biases"
    if kind.startswith("qwen") and getattr(config, "use_sliding_window", False):
        return "per-layer sliding windows"
    if getattr(config, "attn_logit_softcapping", None) or getattr(
        config, "final_logit_softcapping", None
    ):
        return "logit soft-capping"
    if getattr(config, "use_bidirectional_attention", False):
        return "bidirectional attention"
    if any(t not in STATIC_ROPE for t in _rope_types(config)):
        return f"a RoPE type ({_rope_types(config)}) that depends on the sequence length"
    if not hasattr(model, "model") or not hasattr(model.model, "layers"):
        return "an unexpected module layout"
    return None


@dataclass
class LayerWeights:
    kind: str  # FULL or SLIDING: which RoPE table and mask the layer uses
    ln1: torch.Tensor
    ln2: torch.Tensor  # before the MLP (Gemma: pre_feedforward_layernorm)
    qkv: torch.Tensor  # [(Hq + 2 Hkv) * hd, d]
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    gate_up: torch.Tensor  # [2 I, d]
    down: torch.Tensor
    q_norm: torch.Tensor | None  # per-head norms (qwen3, gemma3), attention dtype
    k_norm: torch.Tensor | None
    post_attn_norm: torch.Tensor | None = None  # Gemma: norms on the branch outputs
    post_ff_norm: torch.Tensor | None = None


@dataclass
class LlamaWeights:
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    eps: float
    gemma: bool  # (1 + w) norms in fp32, scaled embeddings, tanh-GELU, branch norms
    embed_scale: torch.Tensor | None  # Gemma multiplies embeddings by sqrt(hidden), model dtype
    attn_scale: float | None  # None: 1 / sqrt(head_dim)
    windows: dict[str, int | None]  # layer kind -> sliding window (None: whole context)
    tables: dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer kind -> (cos, signed sin)
    embed: torch.Tensor
    final_norm: torch.Tensor
    lm_head: torch.Tensor
    layers: list[LayerWeights]
    groups: list[ProjectionGroup]  # PER_LAYER per layer, in layer order, then lm_head


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
    attn, mlp = f"model.layers.{index}.self_attn", f"model.layers.{index}.mlp"
    return [
        ProjectionGroup(
            hidden,
            ((f"{attn}.q_proj", q_out), (f"{attn}.k_proj", kv_out), (f"{attn}.v_proj", kv_out)),
        ),
        ProjectionGroup(q_out, ((f"{attn}.o_proj", hidden),)),
        ProjectionGroup(hidden, ((f"{mlp}.gate_proj", inter), (f"{mlp}.up_proj", inter))),
        ProjectionGroup(inter, ((f"{mlp}.down_proj", hidden),)),
    ]


def _rope_table(
    model: nn.Module, kind: str | None, length: int, dtype: torch.dtype, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    device = model.get_input_embeddings().weight.device
    positions = torch.arange(length, device=device)[None]
    probe = torch.zeros(1, dtype=dtype, device=device)
    with torch.no_grad():
        args = (probe, positions) if kind is None else (probe, positions, kind)
        cos, sin = model.model.rotary_emb(*args)
    sign = torch.ones(head_dim, dtype=dtype, device=device)
    sign[: head_dim // 2] = -1  # rotate_half(x) * sin == cat(x2, x1) * (sign * sin)
    return cos[0].contiguous(), (sin[0] * sign).contiguous()


def _norm_weight(module: nn.Module, gemma: bool) -> torch.Tensor:
    return (1.0 + module.weight.float()) if gemma else module.weight


def prepare_weights(model: nn.Module, *, attn_dtype: torch.dtype, max_length: int) -> LlamaWeights:
    """Fuse a supported model's weights (in place) and build its RoPE tables."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise ValueError(f"the lean runner cannot run this model: {reason}")
    config = model.config.get_text_config()
    gemma = config.model_type == "gemma3_text"
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    hidden, inter = config.hidden_size, config.intermediate_size
    window = getattr(config, "sliding_window", None)
    if window is not None and window >= max_length:
        window = None
    if gemma:
        kinds = list(config.layer_types)
        windows = {FULL: None, SLIDING: window}
        tables = {k: _rope_table(model, k, max_length, attn_dtype, head_dim) for k in set(kinds)}
    else:  # mistral slides every layer; qwen configs carry a window they do not use
        kind = SLIDING if config.model_type == "mistral" and window is not None else FULL
        kinds = [kind] * config.num_hidden_layers
        windows = {kind: window if kind == SLIDING else None}
        tables = {kind: _rope_table(model, None, max_length, attn_dtype, head_dim)}
    layers, groups = [], []
    for index, block in enumerate(model.model.layers):
        attn, mlp = block.self_attn, block.mlp
        qkv, qkv_bias = _fuse([attn.q_proj, attn.k_proj, attn.v_proj], attn.q_proj.bias is not None)
        gate_up, _ = _fuse([mlp.gate_proj, mlp.up_proj], False)
        q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
        pre_ff = block.pre_feedforward_layernorm if gemma else block.post_attention_layernorm
        layers.append(
            LayerWeights(
                kind=kinds[index],
                ln1=_norm_weight(block.input_layernorm, gemma),
                ln2=_norm_weight(pre_ff, gemma),
                qkv=qkv,
                qkv_bias=qkv_bias,
                o=attn.o_proj.weight,
                o_bias=attn.o_proj.bias,
                gate_up=gate_up,
                down=mlp.down_proj.weight,
                q_norm=None if q_norm is None else _norm_weight(q_norm, gemma).to(attn_dtype),
                k_norm=None if k_norm is None else _norm_weight(k_norm, gemma).to(attn_dtype),
                post_attn_norm=_norm_weight(block.post_attention_layernorm, True)
                if gemma
                else None,
                post_ff_norm=_norm_weight(block.post_feedforward_layernorm, True)
                if gemma
                else None,
            )
        )
        groups += _groups(index, hidden, heads * head_dim, kv_heads * head_dim, inter)
    lm_head = model.get_output_embeddings().weight
    groups.append(ProjectionGroup(hidden, (("lm_head", lm_head.shape[0]),)))
    embed_module = model.get_input_embeddings()
    scale = getattr(embed_module, "embed_scale", None)
    return LlamaWeights(
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        hidden=hidden,
        intermediate=inter,
        eps=config.rms_norm_eps,
        gemma=gemma,
        embed_scale=None if scale is None else scale.to(embed_module.weight.dtype),
        attn_scale=config.query_pre_attn_scalar**-0.5 if gemma else None,
        windows=windows,
        tables=tables,
        embed=embed_module.weight,
        final_norm=_norm_weight(model.model.norm, gemma),
        lm_head=lm_head,
        layers=layers,
        groups=groups,
    )
