"""The merged export: base weights with the LoRA folded in, and a check that nothing changed.

Both steps work on a fresh copy of the base (the caller's model, maybe the one serving chats,
is never touched) in float64 by default. Why not float32: on the test models, plain float32
arithmetic alone moves the logits of base + adapter by ~2e-4 between the merged and unmerged
forms (and by as much from the exact values), more than the 1e-4 tolerance, while a wrong
adapter moves them by ~20. In float64 the only difference left is the one the export really
introduces: rounding the merged weights to the float32 they are saved in (~2e-5 there).
Memory: one model at a time, 8 bytes per parameter (about 1 GB for a 135M model); callers
with very large models may pass float32 and a tolerance to match.

The folder is saved in float32: lossless for float32 checkpoints, and a user can cast it down
(`dtype=torch.bfloat16` when loading) without a second export.
"""

import copy
import gc
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.export.archive import atomic_dir
from workers.export.tokenizer_files import save_tokenizer
from workers.ml.chat_format import resolve_template

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

Progress = Callable[[str], None]
TOLERANCE = 1e-4
# A fixed prompt for verify_merged when the caller has none of its own: mixed scripts and
# digits reach many vocabulary rows, so a badly merged projection shows in the logits.
PROBE_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Summarise in one line: 北京是中国的首都, Paris is 2 hours away."},
]


def fresh_base(
    base_model: "str | Path | PreTrainedModel",
    dtype: "torch.dtype",
    device: "str | torch.device" = "cpu",
) -> "PreTrainedModel":
    """A base model in `dtype` that nobody else holds: loaded from a folder, or a deep copy.

    Prefer a folder (LoadedModel.info.path): the checkpoint's own weights. A model given in
    bf16/fp16 is up-cast, which is exact but keeps its earlier rounding.
    """
    from transformers import AutoModelForCausalLM

    from workers.ml.loading import LOAD_LOCK

    if isinstance(base_model, str | Path):
        # trust_remote_code stays off, as in workers.ml.loading; one load at a time per process.
        with LOAD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(
                base_model, dtype=dtype, trust_remote_code=False
            )
    else:
        model = copy.deepcopy(base_model)
    model = model.to(device=device, dtype=dtype)
    model.eval()
    return model


def _with_adapter(base: "PreTrainedModel", adapter_dir: Path, dtype: "torch.dtype") -> Any:
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    # peft up-casts adapters of half-precision bases to float32; keep one dtype throughout.
    return model.to(dtype)


def export_merged(
    base_model: "str | Path | PreTrainedModel",
    tokenizer: Any,
    adapter_dir: str | Path,
    chat_template: str | None,
    out_dir: str | Path,
    *,
    device: "str | torch.device" = "cpu",
    merge_dtype: "torch.dtype | None" = None,
    replace: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Save base + adapter merged into `out_dir` (atomically) and return `out_dir`.

    base_model: the base's folder (preferred) or a loaded model (deep-copied, never modified).
    tokenizer: the base's tokenizer; saved (a copy) with the resolved `chat_template`, which
        takes what resolve_template takes (None, "tokenizer", a name, raw Jinja).
    out_dir: must not exist unless `replace`; it appears only once complete. It holds
        config.json, generation_config.json, model*.safetensors (float32) and the tokenizer.
    merge_dtype: what the merge computes in (default float64, see the module docstring).
    progress: called with "load", "merge", "save".
    """
    import torch

    dtype = merge_dtype or torch.float64
    report = progress or (lambda phase: None)
    with atomic_dir(out_dir, replace=replace) as stage:
        report("load")
        model = _with_adapter(fresh_base(base_model, dtype, device), Path(adapter_dir), dtype)
        report("merge")
        merged = model.merge_and_unload().to(torch.float32)
        report("save")
        merged.save_pretrained(stage)
        save_tokenizer(tokenizer, chat_template, stage)
        del model, merged
        gc.collect()  # the merged copy can be many gigabytes; free it before returning
    return Path(out_dir)


def _prompt_ids(tokenizer: Any, messages: list[dict[str, str]], chat_template: str | None) -> Any:
    """The prompt's token ids rendered as the platform renders them (engine.encode_prompt)."""
    import torch

    _, jinja = resolve_template(tokenizer, chat_template)
    text = tokenizer.apply_chat_template(
        messages, chat_template=jinja, tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(str(text), add_special_tokens=False)["input_ids"]
    return torch.tensor([ids])


def _logits(model: Any, ids: "torch.Tensor") -> "torch.Tensor":
    import torch

    with torch.no_grad():
        out = model(
            input_ids=ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device)
        )
    return out.logits.float().cpu()


def verify_merged(
    base_model: "str | Path | PreTrainedModel",
    adapter_dir: str | Path,
    merged_dir: str | Path,
    tokenizer: Any | None = None,
    prompt_messages: list[dict[str, str]] | None = None,
    *,
    chat_template: str | None = None,
    tolerance: float = TOLERANCE,
    device: "str | torch.device" = "cpu",
    compute_dtype: "torch.dtype | None" = None,
) -> dict[str, Any]:
    """Compare the logits of base+adapter (PEFT, unmerged) with the merged folder's.

    The prompt (PROBE_MESSAGES by default) is rendered with `tokenizer` and `chat_template`
    (pass the ones given to export_merged); tokenizer None uses the merged folder's own, and so
    checks the template it carries. The merged folder is loaded fresh with transformers, as a
    user would, and both run in `compute_dtype` (default float64: see the module docstring).
    The two models are loaded one after the other, never both at once.
    Returns {"max_abs_diff": float | None, "tolerance": float, "ok": bool, "prompt_tokens": int}
    (max_abs_diff None when the difference is NaN or infinite; ok is then False).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = compute_dtype or torch.float64
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    ids = _prompt_ids(tokenizer, prompt_messages or PROBE_MESSAGES, chat_template)

    reference = _with_adapter(fresh_base(base_model, dtype, device), Path(adapter_dir), dtype)
    expected = _logits(reference, ids)
    del reference
    gc.collect()

    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=dtype)
    merged = merged.to(device).eval()
    got = _logits(merged, ids)
    del merged
    gc.collect()

    diff = float((expected - got).abs().max()) if expected.shape == got.shape else math.inf
    finite = math.isfinite(diff)
    return {
        # None for NaN/inf (a broken merge or mismatched vocabularies): keeps the dict JSON.
        "max_abs_diff": diff if finite else None,
        "tolerance": tolerance,
        "ok": finite and diff <= tolerance,
        "prompt_tokens": int(ids.shape[1]),
    }
