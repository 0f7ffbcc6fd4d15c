"""Fallback executor for architectures the lean runner does not know (Phi-3, OLMo, GPT-2, ...).

It runs the transformers forward itself, so any causal LM that loads can be served, with one
DynamicCache per sequence and LoRA (and DoRA) applied through forward hooks on every nn.Linear
(the same LoraBank math as the lean path). Limitation: a decode step runs one forward per row,
because merging per-sequence caches of arbitrary cache types (sliding-window, hybrid) into one
padded batch depends on transformers internals that change between releases. Concurrent requests are
still interleaved token by token (none waits for another to finish), but throughput is that of
a single stream. Llama, Mistral, Qwen 2/3 and Gemma 3 never take this path.
"""

import inspect
from collections.abc import Callable

import torch
from torch import nn
from transformers import DynamicCache

from workers.inference.lora import LoraAdapter, LoraBank, LoraPlan, ProjectionGroup, apply_lora
from workers.inference.runner import WholePrefill


class HFRunner(WholePrefill):
    """Per-row transformers forwards with hooked LoRA; not thread-safe."""

    def __init__(self, model: nn.Module, *, max_rows: int, max_length: int) -> None:
        self.model = model
        self.max_rows, self.max_length = max_rows, max_length
        weight = model.get_input_embeddings().weight
        self.dtype, self.device = weight.dtype, weight.device
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        groups = [ProjectionGroup(m.in_features, ((n, m.out_features),)) for n, m in linears]
        # fp32 LoRA next to bf16 weights on CPU: tiny bf16 matmuls are slow there (lora.py).
        lora_dtype = torch.float32 if self.device.type == "cpu" else self.dtype
        modules = dict(linears)
        self.bank = LoraBank(
            groups,
            dtype=lora_dtype,
            device=self.device,
            base_weight=lambda name: modules[name].weight,
        )
        self._entries: LoraPlan | None = None  # the plan of the row being computed
        for index, (_, module) in enumerate(linears):
            module.register_forward_hook(self._hook(index))
        params = inspect.signature(model.forward).parameters
        # transformers 5 renames past_key_values to cache; accept either spelling.
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._caches: list[DynamicCache] = []
        self._staging: tuple[list[int], str | None, DynamicCache] | None = None
        self._staged = 0  # prompt tokens of the staged sequence already in its cache
        self.row_adapters: list[str | None] = []
        self._plans: dict[str | None, LoraPlan | None] = {}

    def _hook(
        self, index: int
    ) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            plan = self._entries
            entry = plan.entries[index] if plan is not None else None
            if entry is None:
                return
            x = inputs[0].reshape(-1, inputs[0].shape[-1])
            y = output.view(-1, output.shape[-1])
            bias = module.bias if entry.dora is not None else None
            if bias is not None:
                y -= bias  # DoRA rescales W x + LoRA(x), never the bias (lora.project)
            apply_lora(y, x, entry)
            if entry.dora is not None:
                y.mul_(entry.dora)
                if bias is not None:
                    y += bias

        return hook

    @property
    def rows(self) -> int:
        return len(self._caches)

    def attach(self, adapter: LoraAdapter) -> int:
        self._plans.clear()
        return self.bank.add(adapter)

    def detach(self, adapter_id: str) -> None:
        staged = self._staging[1] if self._staging else None
        if adapter_id in self.row_adapters or adapter_id == staged:
            raise RuntimeError(f"adapter {adapter_id!r} is in use by an active sequence")
        self.bank.remove(adapter_id)
        self._plans.clear()

    def _plan(self, adapter_id: str | None) -> LoraPlan | None:
        if adapter_id not in self._plans:
            self._plans[adapter_id] = self.bank.plan([adapter_id])
        return self._plans[adapter_id]

    def _forward(
        self, ids: list[int], cache: DynamicCache | None, adapter_id: str | None
    ) -> torch.Tensor:
        """Logits of the last token [vocab], or of every token [len(ids), vocab] without cache."""
        self._entries = self._plan(adapter_id)
        try:
            if cache is None:
                out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=False)
            else:
                out = self.model(
                    input_ids=torch.tensor([ids], device=self.device),
                    use_cache=True,
                    logits_to_keep=1,
                    **{self._cache_kwarg: cache},
                )
        finally:
            self._entries = None
        return (out.logits[0] if cache is None else out.logits[0, -1]).float()

    @torch.inference_mode()
    def score(self, ids: list[int], adapter_id: str | None) -> torch.Tensor:
        """Logits [len(ids), vocab] at every position of `ids` (teacher forcing), float32.

        One cache-less forward: active and staged sequences keep their own caches untouched,
        so no free row is needed.
        """
        if adapter_id is not None and adapter_id not in self.bank:
            raise RuntimeError(f"adapter {adapter_id!r} is not attached")
        if not 0 < len(ids) <= self.max_length:
            raise ValueError(f"scoring needs 1 to {self.max_length} tokens")
        return self._forward(list(ids), None, adapter_id)

    @property
    def prefilling(self) -> bool:
        return self._staging is not None

    def begin(self, prompt_ids: list[int], adapter_id: str | None) -> None:
        if self._staging is not None or self.rows >= self.max_rows:
            raise RuntimeError("no free batch row")
        if adapter_id is not None and adapter_id not in self.bank:
            raise RuntimeError(f"adapter {adapter_id!r} is not attached")
        self._staging = (list(prompt_ids), adapter_id, DynamicCache(config=self.model.config))
        self._staged = 0

    def abort_prefill(self) -> None:
        self._staging = None

    @torch.inference_mode()
    def prefill_step(self, max_tokens: int) -> torch.Tensor | None:
        if self._staging is None:
            raise RuntimeError("no sequence is being prefilled")
        ids, adapter_id, cache = self._staging
        chunk = ids[self._staged : self._staged + max_tokens]
        logits = self._forward(chunk, cache, adapter_id)
        self._staged += len(chunk)
        if self._staged < len(ids):
            return None
        self._caches.append(cache)
        self.row_adapters.append(adapter_id)
        self._staging = None
        return logits

    @torch.inference_mode()
    def decode(self, tokens: list[int]) -> torch.Tensor:
        if len(tokens) != self.rows:
            raise ValueError(f"{len(tokens)} tokens for {self.rows} rows")
        rows = zip(tokens, self._caches, self.row_adapters, strict=True)
        return torch.stack([self._forward([t], cache, a) for t, cache, a in rows])

    def remove_row(self, row: int) -> None:
        last = self.rows - 1
        self._caches[row], self.row_adapters[row] = self._caches[last], self.row_adapters[last]
        self._caches.pop()
        self.row_adapters.pop()

    def clear(self) -> None:
        self._caches, self.row_adapters, self._staging = [], [], None
