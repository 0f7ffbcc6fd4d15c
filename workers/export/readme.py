"""The README.md shipped inside an adapter export: what it is, how it was made, how to load it.

Everything comes from the caller's `info` dict and the adapter's own config, so the text is
generated per export. Keys read from `info` (all optional except base_model):

    name              a slug naming the adapter (vLLM module name, loras/ folder)
    base_model        the base model as Tunelab names it (built-in id, hub id or folder)
    base_model_repo   hub id to load the base from, when it differs from base_model
    training_config   dict of training settings
    dataset           {"name": ..., "sha256": ..., any other keys are listed too}
    metrics           dict of final metrics
    library_versions  dict package -> version used for training
"""

import json
from typing import Any

# vLLM's --max-lora-rank only accepts these values (vllm/config/lora.py, MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(config: dict[str, Any]) -> int:
    """The largest LoRA rank in a PEFT adapter config (rank_pattern may raise some modules)."""
    ranks = [
        int(config.get("r") or 0),
        *(int(r) for r in (config.get("rank_pattern") or {}).values()),
    ]
    return max(ranks)


def vllm_max_lora_rank(rank: int) -> int | None:
    """Smallest value vLLM accepts for --max-lora-rank that fits `rank`; None if none does."""
    return next((choice for choice in VLLM_LORA_RANKS if choice >= rank), None)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: dict[str, Any], empty: str) -> list[str]:
    if not rows:
        return [empty, ""]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {_cell(key)} | {_cell(value)} |" for key, value in sorted(rows.items())]
    return [*lines, ""]


def _facts(info: dict[str, Any], config: dict[str, Any], template_name: str) -> list[str]:
    targets = config.get("target_modules")
    if isinstance(targets, list):
        # peft may save resolved full paths (model.layers.0.self_attn.q_proj); the layer
        # kinds are what a reader wants.
        targets = ", ".join(sorted({str(t).rsplit(".", 1)[-1] for t in targets}))
    facts = {
        "Base model": info["base_model"],
        "Method": "DoRA" if config.get("use_dora") else "LoRA",
        "Rank (r)": adapter_rank(config),
        "lora_alpha": config.get("lora_alpha"),
        "Target modules": targets,
        "Chat template": template_name,
    }
    if info.get("base_model_repo"):
        facts["Base model (hub)"] = info["base_model_repo"]
    return _table({k: v for k, v in facts.items() if v is not None}, "")


def _dataset(info: dict[str, Any]) -> list[str]:
    dataset = dict(info.get("dataset") or {})
    lines = ["## Training data", ""]
    if not dataset:
        return [*lines, "Not recorded.", ""]
    lines.append(f"- Dataset: {dataset.pop('name', 'unnamed')}")
    if "sha256" in dataset:
        lines.append(f"- sha256: `{dataset.pop('sha256')}`")
    lines += [f"- {key}: {_cell(value)}" for key, value in sorted(dataset.items())]
    return [*lines, ""]


def _usage(info: dict[str, Any], config: dict[str, Any]) -> list[str]:
    name = info.get("name") or "adapter"
    base = info.get("base_model_repo") or info["base_model"]
    rank = adapter_rank(config)
    vllm_rank = vllm_max_lora_rank(rank)
    lines = [
        "## How to use it",
        "",
        "Unzip this archive into a folder, here called `./" + name + "`. The tokenizer files",
        "in it carry the chat template the adapter was trained with: render prompts with it,",
        "or the adapter sees turn markers it never learned.",
        "",
        "### Transformers + PEFT",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base}")',
        f'model = PeftModel.from_pretrained(base, "./{name}")',
        f'tokenizer = AutoTokenizer.from_pretrained("./{name}")',
        'messages = [{"role": "user", "content": "Hello!"}]',
        "inputs = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
        ")",
        "output = model.generate(**inputs, max_new_tokens=128)",
        'answer = output[0, inputs["input_ids"].shape[1] :]',
        "print(tokenizer.decode(answer, skip_special_tokens=True))",
        "```",
        "",
        "`model.merge_and_unload()` folds the adapter into the base weights if you want a plain",
        "model.",
        "",
        "### vLLM",
        "",
    ]
    if config.get("use_dora"):
        lines += [
            "This is a DoRA adapter, which vLLM does not load as a LoRA module. Export the",
            "merged model from Tunelab instead and serve that folder directly.",
            "",
        ]
    elif vllm_rank is None:
        lines += [f"The rank ({rank}) is above what vLLM accepts; export the merged model.", ""]
    else:
        lines += [
            "```bash",
            f"vllm serve {base} \\",
            "    --enable-lora \\",
            f"    --lora-modules {name}=./{name} \\",
            f"    --max-lora-rank {vllm_rank} \\",
            f"    --chat-template ./{name}/chat_template.jinja",
            "```",
            "",
            f"`--max-lora-rank` must be at least the adapter's rank ({rank}); vLLM accepts",
            f"{', '.join(map(str, VLLM_LORA_RANKS))}. Ask for the adapter by sending",
            f'`"model": "{name}"` to the OpenAI-compatible API.',
            "",
        ]
    lines += [
        "### text-generation-webui",
        "",
        f"Copy the folder to `text-generation-webui/loras/{name}/`, load `{base}` with the",
        f"Transformers loader, then pick `{name}` under LoRA(s) and apply it (or start with",
        f"`--lora {name}`). Set the instruction template from `chat_template.jinja`.",
        "",
    ]
    return lines


def render_readme(info: dict[str, Any], config: dict[str, Any], template_name: str) -> str:
    """README.md text for an adapter export; `config` is the adapter's adapter_config.json."""
    name = info.get("name") or "adapter"
    lines = [
        f"# {name}",
        "",
        f"A {'DoRA' if config.get('use_dora') else 'LoRA'} adapter for `{info['base_model']}`,",
        "trained and exported by Tunelab, in the PEFT format.",
        "",
        *_facts(info, config, template_name),
        "## Files",
        "",
        "- `adapter_config.json`, `adapter_model.safetensors`: the adapter, as PEFT saves it",
        "- `tokenizer*.json`, `chat_template.jinja`: the tokenizer, with the chat template",
        "- `README.md`: this file",
        "",
        *_dataset(info),
        "## Training configuration",
        "",
        "```json",
        json.dumps(info.get("training_config") or {}, indent=2, sort_keys=True, ensure_ascii=False),
        "```",
        "",
        "## Metrics",
        "",
        *_table(dict(info.get("metrics") or {}), "Not recorded."),
        "## Library versions",
        "",
        *_table(dict(info.get("library_versions") or {}), "Not recorded."),
        *_usage(info, config),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
