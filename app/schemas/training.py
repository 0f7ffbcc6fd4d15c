"""TrainingConfig: the one schema for a LoRA run. The form renders from it, the API validates
with it, it is stored as JSON on the job, and the worker trains from it.

Field descriptions double as the form's help text (through the message catalog, keyed by
field name); cross-field rules live in the validators, which name the fields they check.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Method(StrEnum):
    LORA = "lora"
    QLORA = "qlora"  # 4-bit base weights; CUDA only


class Scheduler(StrEnum):
    COSINE = "cosine"
    LINEAR = "linear"
    CONSTANT = "constant"


class Precision(StrEnum):
    AUTO = "auto"  # bf16 where the device supports it, else fp16 on CUDA, fp32 on CPU
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class Overlength(StrEnum):
    """What training does with a row longer than `max_length`."""

    TRUNCATE = "truncate"  # cut from the right (an assistant turn may lose its end)
    DROP = "drop"  # leave the row out


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Method = Field(default=Method.LORA, description="LoRA, or QLoRA (4-bit, CUDA only).")
    rank: int = Field(default=8, ge=1, le=256, description="LoRA rank r.")
    alpha: int = Field(default=16, ge=1, le=1024, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(default=0.05, ge=0.0, le=0.5, description="LoRA dropout.")
    use_dora: bool = Field(default=False, description="DoRA: weight-decomposed LoRA.")
    use_rslora: bool = Field(default=False, description="rsLoRA: scale by alpha / sqrt(r).")
    target_modules: list[str] | None = Field(
        default=None, description="Module names to adapt; None means every linear layer."
    )
    learning_rate: float = Field(default=2e-4, gt=0, le=1e-2)
    epochs: float = Field(default=3, gt=0, le=100)
    batch_size: int = Field(default=4, ge=1, le=512)
    gradient_accumulation: int = Field(default=1, ge=1, le=512)
    max_length: int = Field(default=512, ge=16, le=131072)
    overlength: Overlength = Field(
        default=Overlength.TRUNCATE, description="Rows longer than max_length: truncate or drop."
    )
    scheduler: Scheduler = Scheduler.COSINE
    warmup_ratio: float = Field(default=0.03, ge=0, le=0.5)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, ge=0, le=100)
    seed: int = Field(default=42, ge=0)
    val_percent: int = Field(default=10, ge=0, le=50)
    eval_every_steps: int = Field(default=0, ge=0, description="0: once per epoch.")
    checkpoint_every_steps: int = Field(default=0, ge=0, description="0: once per epoch.")
    # Both need validation data (a split or a separate set); without it keep_best does nothing,
    # and patience > 0 is refused when the job is created (app.services.jobs).
    keep_best: bool = Field(
        default=True, description="Save the adapter of the evaluation with the lowest eval loss."
    )
    early_stopping_patience: int = Field(
        default=0, ge=0, le=1000, description="Stop after N evaluations with no improvement."
    )
    early_stopping_min_delta: float = Field(
        default=0.0, ge=0, le=10, description="Eval loss must fall by more than this to improve."
    )
    precision: Precision = Precision.AUTO
    # On by default, as in LLaMA-Factory, Unsloth and AutoTrain: recomputing each layer's
    # activations in backward costs ~30% speed and saves most of the activation memory
    # (bench/bench_train.py measures both), so bigger batches and longer rows fit.
    gradient_checkpointing: bool = True
    chat_template: str | None = None
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes (GPUs) for one run; more than 1 launches torchrun (DDP) on one "
        "worker that has that many (app.services.placement).",
    )

    @model_validator(mode="after")
    def _cross_field(self) -> TrainingConfig:
        if self.use_dora and self.method is Method.QLORA:
            raise ValueError("`use_dora` cannot be combined with `method`=qlora yet")
        return self

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation


PRESETS: dict[str, dict[str, object]] = {
    # Minutes on a CPU: proves the pipeline and shows the loss moving. Speed over memory: without
    # gradient checkpointing the demo set trains ~1.35x faster on 2 cores (175 -> 235 tok/s)
    # and SmolLM2 peaks at ~4 GiB instead of ~2 GiB at batch 4 x 512.
    "quick": {
        "rank": 8,
        "alpha": 16,
        "epochs": 1,
        "max_length": 512,
        "learning_rate": 3e-4,
        "gradient_checkpointing": False,
    },
    "standard": {"rank": 16, "alpha": 32, "epochs": 3, "max_length": 1024},
    "thorough": {"rank": 32, "alpha": 64, "epochs": 5, "max_length": 2048, "learning_rate": 1e-4},
}
