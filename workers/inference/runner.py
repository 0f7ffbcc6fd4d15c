"""The contract between the scheduler and a model executor, and the choice of executor.

A runner owns one base model's batch: rows 0..rows-1 are active sequences in a fixed order.
The scheduler mirrors that order exactly (including the swap on remove_row), so row r of every
logits tensor belongs to the scheduler's r-th active sequence.
"""

from typing import Protocol

import torch
from torch import nn

from workers.inference.lora import LoraAdapter


class Runner(Protocol):
    """What the scheduler needs from a model executor.

    Implementations MUST keep row order stable except for remove_row's documented swap, MUST
    return float32 logits, MUST leave their active rows unchanged when a prefill step raises
    (the scheduler then calls abort_prefill), and MUST keep a staged sequence intact across
    remove_row. They are NOT thread-safe: one engine loop thread drives a runner.
    """

    max_rows: int  # most sequences decoded together
    max_length: int  # positions per sequence (prompt + generated) the runner accepts

    @property
    def rows(self) -> int:
        """Number of active sequences."""
        ...

    def attach(self, adapter: LoraAdapter) -> int:
        """Make an adapter usable by later prefills; returns the bytes it occupies."""
        ...

    def detach(self, adapter_id: str) -> None:
        """Forget an adapter; MUST raise if an active row still uses it."""
        ...

    @property
    def prefilling(self) -> bool:
        """Whether a sequence is staged (begun but not fully prefilled)."""
        ...

    def begin(self, prompt_ids: list[int], adapter_id: str | None) -> None:
        """Stage a new sequence after the active rows; MUST raise if no row is free."""
        ...

    def prefill_step(self, max_tokens: int) -> torch.Tensor | None:
        """Prefill up to `max_tokens` more prompt tokens of the staged sequence.

        Returns None while prompt tokens remain; once the prompt is complete the sequence
        becomes row `rows - 1` and its logits [vocab] for the first new token are returned.
        """
        ...

    def abort_prefill(self) -> None:
        """Forget the staged sequence."""
        ...

    def prefill(self, prompt_ids: list[int], adapter_id: str | None) -> torch.Tensor:
        """begin() and prefill_step() until done: logits [vocab] of the new last row."""
        ...

    def decode(self, tokens: list[int]) -> torch.Tensor:
        """Feed one token per row, all rows in one forward pass; return logits [rows, vocab]."""
        ...

    def score(self, ids: list[int], adapter_id: str | None) -> torch.Tensor:
        """Float32 logits [len(ids), vocab] at every position of one sequence (teacher forcing,
        causal), through `adapter_id` (None: the base model): evaluation's perplexity.

        MUST leave active rows and a staged sequence unchanged. MAY raise RuntimeError when it
        needs a free batch row for scratch space and none is free (LlamaRunner uses the cache
        row after the active and staged rows) or when the adapter is not attached; raises
        ValueError when `ids` is empty or longer than max_length.
        """
        ...

    def remove_row(self, row: int) -> None:
        """Drop a row; the last row (if another) takes its index; a staged one moves up too."""
        ...

    def clear(self) -> None:
        """Drop every row and any staged sequence (after a failed step)."""
        ...


class WholePrefill:
    """Runner.prefill() written once on top of begin(), prefill_step() and abort_prefill():
    the runners only differ in those steps."""

    max_length: int

    def begin(self, prompt_ids: list[int], adapter_id: str | None) -> None:
        raise NotImplementedError

    def prefill_step(self, max_tokens: int) -> torch.Tensor | None:
        raise NotImplementedError

    def abort_prefill(self) -> None:
        raise NotImplementedError

    def prefill(self, prompt_ids: list[int], adapter_id: str | None) -> torch.Tensor:
        self.begin(prompt_ids, adapter_id)
        try:
            while (logits := self.prefill_step(self.max_length)) is None:
                pass
        except BaseException:  # a failed prefill leaves no half-staged sequence behind
            self.abort_prefill()
            raise
        return logits


def make_runner(model: nn.Module, *, max_rows: int, max_length: int) -> Runner:
    """The lean batched runner when the architecture allows it, else the generic fallback."""
    from workers.inference.hf_runner import HFRunner
    from workers.inference.llama_runner import LlamaRunner
    from workers.inference.llama_weights import unsupported_reason

    if unsupported_reason(model) is None:
        return LlamaRunner(model, max_rows=max_rows, max_length=max_length)
    return HFRunner(model, max_rows=max_rows, max_length=max_length)
