"""Next-token choice for a batch whose rows each have their own sampling settings and seed.

Processing order follows transformers' generate(): repetition penalty, temperature, top-k,
top-p, then a draw. Temperature 0 is greedy (argmax after the penalty). Each row owns a
torch.Generator seeded from its request, so a seeded request replays the same draws no matter
which other requests share its batch (the logits themselves can differ in the last bits between
batch sizes, so an exact replay is only guaranteed for the same batch composition).
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0 or self.top_k == 1


class RowSampler:
    """Sampling state of one sequence: its settings, its RNG and the tokens seen so far."""

    def __init__(
        self,
        params: SamplingParams,
        prompt_ids: Sequence[int],
        vocab_size: int,
        device: torch.device,
    ) -> None:
        self.params = params
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
        self.seen: torch.Tensor | None = None
        if params.repetition_penalty != 1.0:
            # Like generate(), the penalty covers prompt tokens too.
            self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            if prompt_ids:
                ids = torch.tensor(list(prompt_ids), device=device).clamp_(max=vocab_size - 1)
                self.seen[ids] = True

    def observe(self, token_id: int) -> None:
        if self.seen is not None and token_id < self.seen.numel():
            self.seen[token_id] = True

    def choose(self, logits: torch.Tensor) -> int:
        """One token id from a row of float32 logits [vocab]."""
        p = self.params
        if self.seen is not None:
            penalised = torch.where(
                logits < 0, logits * p.repetition_penalty, logits / p.repetition_penalty
            )
            logits = torch.where(self.seen, penalised, logits)
        if p.greedy:
            return int(logits.argmax())
        logits = logits / p.temperature
        index: torch.Tensor | None = None
        if 0 < p.top_k < logits.numel():
            logits, index = torch.topk(logits, p.top_k)  # sorted, as top-p needs
        if p.top_p < 1.0:
            if index is None:
                logits, index = torch.sort(logits, descending=True)
            probs = torch.softmax(logits, dim=-1)
            # Keep the smallest head whose mass reaches top_p (the first token always stays).
            drop = probs.cumsum(-1) - probs >= p.top_p
            logits = logits.masked_fill(drop, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return int(index[choice] if index is not None else choice)


def choose_tokens(logits: torch.Tensor, samplers: Sequence[RowSampler]) -> list[int]:
    """Next token for every row of `logits` [rows, vocab] (float32)."""
    if all(s.params.greedy and s.seen is None for s in samplers):
        # The common benchmark/eval case: one argmax and one device sync for the whole batch.
        tokens: list[int] = logits.argmax(dim=-1).tolist()
    else:
        tokens = [sampler.choose(row) for sampler, row in zip(samplers, logits, strict=True)]
    for sampler, token in zip(samplers, tokens, strict=True):
        sampler.observe(token)
    return tokens
