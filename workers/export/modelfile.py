"""An Ollama Modelfile for an exported GGUF: its TEMPLATE says the model's own chat format.

Ollama does not run the Jinja chat template stored in a GGUF; it renders the Modelfile's
TEMPLATE, written in Go's text/template, over the request's messages. We write that TEMPLATE
for the family the Jinja template belongs to, found from its turn markers:

    chatml  <|im_start|>role ... <|im_end|>                  (SmolLM2, Qwen)
    gemma   <start_of_turn>user / model ... <end_of_turn>    (Gemma; system folded into turn 1)
    llama3  <|start_header_id|>role<|end_header_id|> ... <|eot_id|>

A default system prompt that the Jinja template inserts when a conversation has none (SmolLM2
does) becomes the Modelfile's SYSTEM, which Ollama sends in the same case. Before anything is
returned, the TEMPLATE is run (go_template, with Ollama's own message handling) over probe
conversations and must give exactly the Jinja template's text; a variant we do not reproduce
(tools, dates, extra blocks) is refused with an error rather than exported subtly wrong.

BOS is never written in TEMPLATE: llama.cpp (inside Ollama) adds it itself when the GGUF's
tokenizer.ggml.add_bos_token says so (the converter sets it from the tokenizer); pass that flag
as add_bos and a template that disagrees with it is refused.
Import with: `ollama create NAME -f Modelfile` (run in the folder holding the GGUF).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.export import go_template
from workers.export.chat_render import render_chat
from workers.export.errors import ExportFailed

# Ollama's own convention (its library templates): a turn that is the last message and the
# assistant's is left open, so the reply continues it; otherwise the generation prompt follows
# the last message.
_LAST = "{{- $last := eq (len (slice $.Messages $i)) 1 }}"

TEMPLATES = {
    "chatml": (
        "{{- range $i, $_ := .Messages }}\n" + _LAST + "\n"
        '{{- if eq .Role "assistant" }}<|im_start|>assistant\n'
        "{{ .Content }}{{ if not $last }}<|im_end|>\n"
        "{{ end }}\n"
        "{{- else }}<|im_start|>{{ .Role }}\n"
        "{{ .Content }}<|im_end|>\n"
        "{{ end }}\n"
        '{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant\n'
        "{{ end }}\n"
        "{{- end }}"
    ),
    # Gemma has no system turn: the system text opens the first user turn, followed by a blank
    # line. Ollama keeps system messages in .Messages (and joins them into .System), so the
    # first user turn is at index 1 exactly when a system message came first.
    "gemma": (
        "{{- range $i, $_ := .Messages }}\n" + _LAST + "\n"
        '{{- if eq .Role "user" }}<start_of_turn>user\n'
        "{{ if and $.System (eq $i 1) }}{{ $.System }}\n\n{{ end }}"
        "{{ .Content }}<end_of_turn>\n"
        "{{ if $last }}<start_of_turn>model\n"
        "{{ end }}\n"
        '{{- else if eq .Role "assistant" }}<start_of_turn>model\n'
        "{{ .Content }}{{ if not $last }}<end_of_turn>\n"
        "{{ end }}\n"
        "{{- end }}\n"
        "{{- end }}"
    ),
    "llama3": (
        "{{- range $i, $_ := .Messages }}\n" + _LAST + "<|start_header_id|>{{ .Role }}"
        "<|end_header_id|>\n\n"
        '{{ .Content }}{{ if or (ne .Role "assistant") (not $last) }}<|eot_id|>{{ end }}\n'
        '{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant'
        "<|end_header_id|>\n\n"
        "{{ end }}\n"
        "{{- end }}"
    ),
}
MARKERS = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
}
# Probe conversations the TEMPLATE must render exactly like the Jinja template. Contents have
# no leading or trailing spaces: Llama 3 and Gemma 3 templates trim them, which Go templates
# cannot do, so Ollama differs from them there whatever TEMPLATE says.
_PROBES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "Hi there!"}],
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of China? 用中文回答。"},
    ],
    [
        {"role": "system", "content": "You answer in one line."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of China?"},
    ],
]
_SYSTEM_SLOT = "\x00system\x00"
# Templates see this as bos_token, so a BOS they write is told apart from text that merely
# equals it (SmolLM2's BOS is <|im_start|>, which its template writes as a turn marker).
_BOS_SLOT = "\x00bos\x00"


class ModelfileError(ExportFailed):
    """The chat template cannot be written as an Ollama TEMPLATE (unknown or unsupported);
    export_failed with the sentence as its detail."""


@dataclass(frozen=True)
class Modelfile:
    family: str
    template: str  # the Go TEMPLATE
    system: str | None  # the default system prompt (SYSTEM), if the chat template has one
    stops: tuple[str, ...]
    text: str  # the Modelfile itself


def detect_family(jinja_template: str) -> str:
    """ "chatml", "gemma" or "llama3", from the turn markers in the Jinja template."""
    for family, markers in MARKERS.items():
        if markers[0] in jinja_template:
            return family
    known = ", ".join(f"{name} ({markers[0]})" for name, markers in MARKERS.items())
    raise ModelfileError(
        f"the chat template's format is not one an Ollama TEMPLATE can be written for "
        f"(known: {known})"
    )


def _collate(messages: Sequence[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Ollama's template.collate: consecutive same-role messages merge (joined by a blank line,
    tool results excepted); every system message's text is also joined into .System."""
    system: list[str] = []
    collated: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            system.append(content)
        if collated and collated[-1]["Role"] == role and role != "tool":
            collated[-1]["Content"] += "\n\n" + content
        else:
            collated.append({"Role": role, "Content": content})
    return "\n\n".join(system), collated


def render_ollama_template(
    template: str, messages: Sequence[dict[str, Any]], *, system: str | None = None
) -> str:
    """The prompt Ollama's /api/chat builds with Go `template` for `messages`.

    `system` is the Modelfile's SYSTEM: Ollama puts it first when the conversation does not
    start with a system message of its own (server/routes.go, ChatHandler).
    """
    messages = list(messages)
    if system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system}, *messages]
    joined, collated = _collate(messages)
    data = {
        "System": joined,
        "Messages": collated,
        "Tools": None,
        "Response": "",
        "Think": False,
        "IsThinkSet": False,
    }
    return go_template.render(template, data)


def _jinja_prompt(jinja_template: str, messages: Sequence[dict[str, Any]], eos: str) -> str:
    """The Jinja template's prompt without its leading BOS (llama.cpp adds that one itself)."""
    text = render_chat(jinja_template, messages, bos_token=_BOS_SLOT, eos_token=eos)
    return text.removeprefix(_BOS_SLOT)


def _writes_bos(jinja_template: str) -> bool:
    return render_chat(jinja_template, _PROBES[0], bos_token=_BOS_SLOT).startswith(_BOS_SLOT)


def _default_system(template: str, jinja_template: str, eos: str) -> str | None:
    """The system prompt the Jinja template adds when a conversation has none, or None.

    TEMPLATE's output with a placeholder system message becomes a pattern; if the Jinja output
    for a conversation without one fits it, the placeholder's match is the default prompt.
    """
    probe = _PROBES[0]
    expected = _jinja_prompt(jinja_template, probe, eos)
    if render_ollama_template(template, probe) == expected:
        return None
    shaped = render_ollama_template(template, [{"role": "system", "content": _SYSTEM_SLOT}, *probe])
    pattern = "(.*)".join(re.escape(part) for part in shaped.split(_SYSTEM_SLOT))
    match = re.fullmatch(pattern, expected, re.S)
    return match.group(1) if match and match.group(1) else None


def _check(template: str, system: str | None, jinja_template: str, eos: str) -> None:
    for probe in _PROBES:
        expected = _jinja_prompt(jinja_template, probe, eos)
        got = render_ollama_template(template, probe, system=system)
        if got != expected:
            raise ModelfileError(
                "the Ollama TEMPLATE would not reproduce this chat template "
                f"(expected {expected!r}, got {got!r})"
            )


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise ModelfileError(f"the {what} contains triple quotes, which a Modelfile cannot hold")
    return f'"""{text}"""'


def ollama_modelfile(
    gguf_name: str,
    jinja_template: str,
    *,
    eos_token: str = "",
    add_bos: bool | None = None,
    parameters: dict[str, Any] | None = None,
) -> Modelfile:
    """A Modelfile for the GGUF file `gguf_name` (a name in the Modelfile's folder).

    jinja_template: the chat template stored in the GGUF (read_chat_template) or tokenizer.
    eos_token: the tokenizer's EOS as text (templates may write it; it is also a stop word).
    add_bos: the GGUF's tokenizer.ggml.add_bos_token when known: llama.cpp adds BOS exactly
        when it is set, so it must agree with whether the Jinja template starts with BOS.
    parameters: extra PARAMETER lines (name -> value), e.g. {"temperature": 0.7}.
    Raises ModelfileError for a format outside chatml/gemma/llama3, a variant whose prompts
    the TEMPLATE would not reproduce exactly, or a BOS that llama.cpp would not add.
    """
    family = detect_family(jinja_template)
    template = TEMPLATES[family]
    if add_bos is not None and add_bos != _writes_bos(jinja_template):
        raise ModelfileError(
            f"the chat template {'writes' if not add_bos else 'omits'} BOS but the GGUF's "
            f"tokenizer.ggml.add_bos_token is {add_bos}, so Ollama's prompts would differ"
        )
    system = _default_system(template, jinja_template, eos_token)
    _check(template, system, jinja_template, eos_token)
    stops = tuple(dict.fromkeys([*MARKERS[family], *([eos_token] if eos_token else [])]))
    lines = [f"FROM ./{gguf_name}", "", f"TEMPLATE {_quoted(template, 'template')}"]
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'system prompt')}")
    lines.append("")
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines += [f"PARAMETER {name} {value}" for name, value in (parameters or {}).items()]
    return Modelfile(family, template, system, stops, "\n".join(lines) + "\n")
