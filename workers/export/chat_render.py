"""Render a chat template held as text (read back from a GGUF file), as transformers renders it.

The GGUF checks and the Modelfile builder compare prompts with what the tokenizer's
apply_chat_template produces, so they render through transformers' own function: the same
sandboxed Jinja environment (trim_blocks, lstrip_blocks, loop controls, raise_exception,
strftime_now, a tojson that keeps non-ASCII), with no tokenizer object needed.
"""

from collections.abc import Sequence
from typing import Any


def render_chat(
    template: str,
    messages: Sequence[dict[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    """The prompt text `template` gives for `messages`, as tokenizer.apply_chat_template would
    with tokenize=False (bos_token/eos_token are what templates see under those names)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[list(messages)],
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    )
    return str(rendered[0])
