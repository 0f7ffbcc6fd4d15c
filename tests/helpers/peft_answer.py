"""What a user of an adapter download gets: unzip it, load it with plain transformers + peft on
the base, and answer greedily with the chat template the zip carries."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any


def peft_greedy_answer(
    base: str | Path,
    adapter_zip: bytes,
    folder: Path,
    messages: list[dict[str, Any]],
    n_tokens: int,
) -> str:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    zipfile.ZipFile(io.BytesIO(adapter_zip)).extractall(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), folder).eval()
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
            max_new_tokens=n_tokens,
        )  # fmt: skip
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
