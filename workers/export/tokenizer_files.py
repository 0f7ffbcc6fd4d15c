"""Tokenizer files for an export, carrying the chat template the platform renders prompts with.

An adapter only answers well when prompts use the turn format it was trained on. The platform
resolves that format with workers.ml.chat_format.resolve_template (the project's template, or
the tokenizer's own, or a guess for base models); exports save exactly that template with the
tokenizer, so transformers, vLLM and other tools render the same prompts as the platform.
"""

import copy
from pathlib import Path
from typing import Any

from workers.ml.chat_format import resolve_template

TEMPLATE_FILE = "chat_template.jinja"


def save_tokenizer(tokenizer: Any, chat_template: str | None, folder: Path) -> tuple[str, str]:
    """Save `tokenizer` into `folder` with the resolved chat template set; (name, jinja).

    `chat_template` takes what resolve_template takes: None, "tokenizer", a named template or
    raw Jinja. The caller's tokenizer is not modified (a copy is saved). chat_template.jinja is
    always written, since vLLM's --chat-template and other tools read that file.
    """
    name, jinja = resolve_template(tokenizer, chat_template)
    saved = copy.deepcopy(tokenizer)
    if jinja is not None:
        saved.chat_template = jinja
    saved.save_pretrained(folder)
    template = saved.chat_template
    if not isinstance(template, str):
        # Tokenizers with several named templates keep a dict; "default" is the chat one.
        template = dict(template or {}).get("default", "")
    target = folder / TEMPLATE_FILE
    if not target.exists():  # older transformers keep it inside tokenizer_config.json only
        target.write_text(template, encoding="utf-8")
    return name, template
