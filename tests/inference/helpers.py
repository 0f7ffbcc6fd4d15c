"""Builders for the inference tests: tiny models of several families, adapters, references.

Weights are initialised at a large scale so greedy outputs vary from token to token: a wrong
row, position or adapter then shows up as a different answer instead of a repeated token.
"""

from pathlib import Path
from typing import Any

import torch

from workers.inference import GenerationRequest

FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma3_text", "phi3")


def build_family_model(folder: Path, tokenizer: Any, family: str, seed: int = 0) -> Path:
    """A 2-layer model of `family` (hidden 64) saved with `tokenizer` into `folder`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "initializer_range": 0.4,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    extra: dict[str, Any] = {
        "mistral": {"sliding_window": 12},  # shorter than the prompts: exercises the window
        "gemma3_text": {
            "sliding_window": 12,
            "layer_types": ["sliding_attention", "full_attention"],
        },
        "qwen2": {"layer_types": ["full_attention", "full_attention"]},
        "qwen3": {"layer_types": ["full_attention", "full_attention"]},
    }.get(family, {})
    config = AutoConfig.for_model(family, **common, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if family == "qwen2":
        with torch.no_grad():  # non-zero q/k/v biases, so the fused bias path is checked
            for layer in model.model.layers:
                for proj in (
                    layer.self_attn.q_proj,
                    layer.self_attn.k_proj,
                    layer.self_attn.v_proj,
                ):
                    proj.bias.normal_(0, 0.2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_adapter(
    base_dir: Path,
    folder: Path,
    *,
    seed: int,
    rank: int = 4,
    targets: Any = "all-linear",
    dora: bool = False,
) -> Path:
    """A LoRA adapter with random non-zero B (a fresh LoRA is a no-op: B starts at zero).

    dora=True: a DoRA adapter whose magnitudes are also moved off their initial ||W||, so both
    halves of DoRA (direction and magnitude) change the answer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0, use_dora=dora
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_magnitude_vector" in name:
                param.mul_(1 + 0.3 * torch.randn(param.shape, generator=generator))
            elif "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    peft_model.save_pretrained(folder)
    return folder


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def greedy(base: Path | str, adapter: str | None, text: str, **kwargs: Any) -> GenerationRequest:
    kwargs.setdefault("max_new_tokens", 24)
    return GenerationRequest(
        request_id=f"{adapter}-{text[:10]}",
        base_id=str(base),
        adapter_id=adapter,
        messages=chat(text),
        temperature=0.0,
        **kwargs,
    )


def reference_ids(
    base: Path, prompt_ids: list[int], max_new_tokens: int, adapter: Path | None = None
) -> list[int]:
    """What transformers' generate() (through peft for an adapter) produces greedily, fp32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=max_new_tokens,
        )
    return out[0, len(prompt_ids) :].tolist()
