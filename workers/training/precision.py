"""Device-dependent choices: the autocast precision, the weight dtype, and QLoRA loading.

CPU: bf16 weights and bf16 autocast where the CPU has native bf16 matmuls (AVX-512 BF16 / AMX:
2-4x the fp32 matmul rate measured here), else fp32.
CUDA: bf16 autocast where supported, else fp16 autocast with a GradScaler (fp16's narrow range
underflows small gradients without loss scaling). LoRA weights stay fp32 either way: peft keeps
adapter weights in fp32 (autocast_adapter_dtype), so the optimizer updates full-precision values;
under autocast, keep_half_inputs() stops peft from making an fp32 copy of every layer input.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.error_codes import JobError
from app.schemas.training import Method, Precision, TrainingConfig
from workers.ml.device import pick_dtype
from workers.training.errors import UnsupportedSetting


@dataclass(frozen=True)
class PrecisionPlan:
    name: str  # "bf16", "fp16" or "fp32": what the matmuls run in
    autocast_dtype: torch.dtype | None  # None: no autocast
    weight_dtype: torch.dtype  # dtype the frozen base weights are loaded in
    grad_scaler: bool

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.autocast_dtype or torch.float32


@functools.cache
def cpu_has_native_bf16() -> bool:
    """oneDNN reports native bf16 (avx512_bf16 / AMX), and a bf16 matmul actually runs."""
    try:
        native = bool(torch.backends.mkldnn.is_available()) and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
        a = torch.ones(8, 8, dtype=torch.bfloat16)
        return native and bool((a @ a)[0, 0] == 8)
    except (AttributeError, RuntimeError):
        return False


def plan_precision(config: TrainingConfig, device: torch.device) -> PrecisionPlan:
    wanted = config.precision
    if device.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if wanted is Precision.AUTO:
            wanted = Precision.BF16 if bf16_ok else Precision.FP16
        if wanted is Precision.BF16 and not bf16_ok:
            raise UnsupportedSetting(
                "`precision`=bf16 is not supported by this GPU; use fp16 or auto",
                JobError.PRECISION_UNSUPPORTED,
                precision="bf16",
                device=str(device),
                use="fp16 / auto",
            )
        if wanted is Precision.FP32:
            return PrecisionPlan("fp32", None, torch.float32, False)
        dtype = torch.bfloat16 if wanted is Precision.BF16 else torch.float16
        # Base weights in the GPU's native half type (pick_dtype); autocast does the rest.
        return PrecisionPlan(wanted.value, dtype, pick_dtype(device), dtype == torch.float16)
    if device.type == "cpu":
        if wanted is Precision.AUTO:
            wanted = Precision.BF16 if cpu_has_native_bf16() else Precision.FP32
        if wanted is Precision.FP16:
            raise UnsupportedSetting(
                "`precision`=fp16 needs a CUDA GPU; use bf16, fp32 or auto on CPU",
                JobError.PRECISION_UNSUPPORTED,
                precision="fp16",
                device="cpu",
                use="bf16 / fp32 / auto",
            )
        if wanted is Precision.BF16:
            # Frozen base weights in bf16, as on a GPU: the layers' inputs are then bf16 tensors
            # shared by every projection that reads them, instead of one autocast copy per
            # projection. Measured on SmolLM2-135M, batch 4 x 512: 3.5 GiB peak and ~3.5 s a
            # step, against 4.5 GiB and ~5 s with fp32 weights under autocast. LoRA weights,
            # gradients and optimizer state stay fp32.
            return PrecisionPlan("bf16", torch.bfloat16, torch.bfloat16, False)
        return PrecisionPlan("fp32", None, torch.float32, False)
    if wanted not in (Precision.AUTO, Precision.FP32):
        raise UnsupportedSetting(
            f"`precision`={wanted.value} is not supported on {device.type}; use fp32",
            JobError.PRECISION_UNSUPPORTED,
            precision=wanted.value,
            device=device.type,
            use="fp32",
        )
    return PrecisionPlan("fp32", None, torch.float32, False)


def check_method(config: TrainingConfig, device: torch.device) -> None:
    """Fail fast, before any loading, on a method this device cannot run."""
    if config.method is Method.QLORA and device.type != "cuda":
        raise UnsupportedSetting(
            f"`method`=qlora needs a CUDA GPU (4-bit bitsandbytes kernels); this run is on "
            f"{device.type}. Use `method`=lora here.",
            JobError.QLORA_NEEDS_CUDA,
            device=device.type,
        )


def load_quantized(
    folder: Path, device: torch.device, plan: PrecisionPlan
) -> tuple[torch.nn.Module, Any]:
    """QLoRA base: NF4 4-bit weights with double quantization, from a folder that
    workers.ml.loading.resolve_source produced. Tokenizer handled as load_from_folder does."""
    try:
        import bitsandbytes  # noqa: F401  (imported only to fail with a clear message)
    except ImportError as exc:
        raise UnsupportedSetting(
            "`method`=qlora needs the bitsandbytes package on this worker: "
            "pip install bitsandbytes (or use `method`=lora)",
            JobError.QLORA_NEEDS_BITSANDBYTES,
        ) from exc
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=plan.compute_dtype,
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        quantization_config=quant,
        dtype=plan.weight_dtype,
        device_map={"": device.index or 0},
        trust_remote_code=False,
    )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    # Casts norms to fp32 and freezes the base; gradient checkpointing is set up by the caller.
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, tokenizer


def keep_half_inputs(model: torch.nn.Module) -> None:
    """Let LoRA layers take their half-precision input as is (autocast casts the small LoRA
    weights instead). peft otherwise casts each input to the fp32 adapter dtype: one extra
    activation copy per adapted projection, kept for backward (peft.helpers has the same switch
    as a context manager)."""
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
