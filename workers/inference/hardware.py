"""Weight dtype for serving, which may differ from training's choice in workers.ml.device.

On CPUs with native bf16 arithmetic (AVX-512 BF16 or AMX) bf16 weights halve the bytes read per
decode step and double matmul throughput: SmolLM2-135M decodes ~1.9x faster than in fp32 on the
reference machine (FACTS.md). Matmuls still accumulate in fp32, RMSNorm runs in fp32 and logits
are sampled in fp32, so greedy answers rarely change; training keeps fp32 weights on CPU.
"""

import os

import torch

from workers.ml.device import parse_dtype, pick_dtype

# Lets an operator force the serving dtype ("float32", "bf16", ...) without code.
INFERENCE_DTYPE_ENV = "TUNELAB_INFERENCE_DTYPE"


def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    # These private probes exist in torch >= 2.2; without them fp32 is the safe answer.
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def inference_dtype(device: torch.device | str) -> torch.dtype:
    """$TUNELAB_INFERENCE_DTYPE if set; bf16 on CPUs with native bf16; else pick_dtype(device)."""
    override = os.environ.get(INFERENCE_DTYPE_ENV, "").strip()
    if override and override.lower() != "auto":
        return parse_dtype(override)
    device = torch.device(device)
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return pick_dtype(device)
