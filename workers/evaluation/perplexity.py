"""Held-out negative log-likelihood of a conversation's answer tokens, through the chat engine.

The tokens scored are exactly those the training loss counts (tokenize_conversation's labels,
shifted by one as in workers/training/loss.py), and the logits come from InferenceEngine.score,
the same runner, weights and adapter math that serve chat: the evaluation measures the model
the user talks to. Perplexity over a test set is exp(sum of NLLs / sum of answer tokens).
"""

import torch
import torch.nn.functional as F

from workers.inference import InferenceEngine
from workers.ml.chat_format import IGNORE_INDEX, tokenize_conversation


class NoAnswerTokens(ValueError):
    """A conversation has no answer token to score (e.g. the context cut every assistant turn)."""


def answer_nll(
    engine: InferenceEngine,
    base_id: str,
    adapter_id: str | None,
    messages: list[dict[str, str]],
    template: str | None,
) -> tuple[float, int, bool]:
    """(sum of the answer tokens' NLL in nats, number of answer tokens, truncated).

    The conversation is cut to the base's context length like training cuts it (from the
    right; truncated tells). Raises ChatFormatError for a conversation the template cannot
    render, NoAnswerTokens when no answer token is left.
    """
    base = engine.ensure_base(base_id)
    example = tokenize_conversation(
        base.loaded.tokenizer, messages, template=template, max_length=base.context_length
    )
    # Position t predicts token t+1; position 0 is never predicted (training's shift).
    targets = torch.tensor(example.input_ids[1:], dtype=torch.long)
    keep = torch.tensor(example.labels[1:]) != IGNORE_INDEX
    count = int(keep.sum())
    if count == 0:
        raise NoAnswerTokens(
            "the conversation has no answer token to score within the model's context of "
            f"{base.context_length} tokens"
        )
    logits = engine.score(base_id, adapter_id, example.input_ids)
    with torch.inference_mode():
        rows = logits[:-1][keep.to(logits.device)].float()  # only answer positions need softmax
        log_probs = F.log_softmax(rows, dim=-1)
        picked = log_probs.gather(1, targets[keep].to(logits.device)[:, None])
        nll = -picked.double().sum()
    return float(nll), count, example.truncated
