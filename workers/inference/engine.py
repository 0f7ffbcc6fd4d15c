"""InferenceEngine: base models and LoRA adapters kept in memory, and prompts rendered for them.

Base models are loaded through workers.ml.loading.load_model (the same loader as training and
evaluation) and kept in a least-recently-used order within a memory budget. Adapters are
attached to a loaded base without reloading it; each base keeps its own LRU of adapters.
Generation itself runs in workers.inference.scheduler.Scheduler, which drives the engine from
one loop thread.
"""

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.catalog import UnknownModelError, get_entry
from workers.inference.errors import MemoryBudgetExceeded, PromptTooLong, UnknownAdapter
from workers.inference.events import GenerationRequest
from workers.inference.hardware import inference_dtype
from workers.inference.lora import read_lora_adapter
from workers.inference.prompts import request_conversation
from workers.inference.runner import Runner, make_runner
from workers.ml.chat_format import resolve_template
from workers.ml.device import free_memory, parse_dtype, pick_device
from workers.ml.errors import ChatFormatError
from workers.ml.loading import LoadedModel, load_model

DEFAULT_CONTEXT = 2048  # for models whose config names no context length


@dataclass
class LoadedBase:
    """A base model ready to serve: weights, tokenizer, executor and attached adapters."""

    base_id: str
    loaded: LoadedModel
    runner: Runner
    weight_bytes: int
    context_length: int
    eos_token_ids: frozenset[int]
    vocab_size: int  # width of the logits rows
    adapters: OrderedDict[str, int] = field(default_factory=OrderedDict)  # id -> bytes, LRU

    @property
    def nbytes(self) -> int:
        return self.weight_bytes + sum(self.adapters.values())


def _eos_ids(loaded: LoadedModel) -> frozenset[int]:
    # generate() stops on generation_config's ids (chat models list their end-of-turn token
    # there); the tokenizer's EOS is added for models whose generation config names none.
    config = getattr(loaded.model, "generation_config", None)
    value = getattr(config, "eos_token_id", None)
    ids = set(value if isinstance(value, list) else [] if value is None else [value])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return frozenset(int(i) for i in ids)


class InferenceEngine:
    """Loaded base models (LRU within a memory budget) and their adapters.

    Contract:
    - Base models MUST be loaded only through workers.ml.loading.load_model.
    - load_count[base_id] counts loads; attaching or switching adapters MUST NOT reload a base.
    - The budget covers weights (parameters x dtype size) plus attached adapters; KV caches
      are not counted. Loading evicts least-recently-used bases that no active sequence pins;
      a model that cannot fit even then raises MemoryBudgetExceeded.
    - Thread safety: methods that load or attach take `lock`, which a Scheduler holds for each
      step (and during a base load), so they are safe from any thread but MAY block; other
      threads SHOULD only call register_adapter, loaded_bases, loaded_adapters and used_bytes,
      which never wait for `lock`.
    """

    def __init__(
        self,
        data_dir: str | Path,
        memory_budget_bytes: int,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        max_batch_size: int = 8,
        max_adapters_per_base: int = 16,
        max_context: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.memory_budget_bytes = memory_budget_bytes
        self.device = pick_device(device)
        self.dtype = parse_dtype(dtype) if dtype is not None else inference_dtype(self.device)
        self.max_batch_size = max_batch_size
        self.max_adapters_per_base = max_adapters_per_base
        self.max_context = max_context
        self.load_count: Counter[str] = Counter()
        self.lock = threading.RLock()
        # Guards the bookkeeping below for readers that must not wait for a step or a load.
        self._meta = threading.Lock()
        self._bases: OrderedDict[str, LoadedBase] = OrderedDict()
        self._adapter_paths: dict[tuple[str, str], Path] = {}
        self._known_bytes: dict[str, int] = {}  # weight bytes of bases loaded before
        self._pins: Counter[tuple[str, str | None]] = Counter()

    # -- base models -------------------------------------------------------------------------

    def loaded_bases(self) -> list[str]:
        """Loaded base ids, least recently used first."""
        with self._meta:
            return list(self._bases)

    def used_bytes(self) -> int:
        """Bytes of loaded weights and attached adapters (what the budget limits)."""
        with self._meta:
            return sum(base.nbytes for base in self._bases.values())

    def _pinned(self, base_id: str) -> bool:
        return any(count and key[0] == base_id for key, count in self._pins.items())

    def _fit_budget(self, incoming: int, keep: str | None) -> None:
        """Evict idle bases, oldest first, then idle adapters of `keep`, until `incoming` fits."""
        while self.used_bytes() + incoming > self.memory_budget_bytes:
            idle = [b for b in self._bases if b != keep and not self._pinned(b)]
            if idle:
                self.evict_base(idle[0])
                continue
            base = self._bases.get(keep) if keep is not None else None
            spare = [a for a in base.adapters if not self._pins[(keep, a)]] if base else []
            if base is None or not spare:
                raise MemoryBudgetExceeded(
                    f"{incoming + self.used_bytes()} bytes of models are needed at once but the "
                    f"inference memory budget is {self.memory_budget_bytes} bytes"
                )
            self._detach(base, spare[0])

    def _expected_bytes(self, base_id: str) -> int:
        if base_id in self._known_bytes:
            return self._known_bytes[base_id]
        try:
            count = get_entry(base_id).parameter_count or 0
        except UnknownModelError:
            return 0
        return count * torch.empty((), dtype=self.dtype).element_size()

    def ensure_base(self, base_id: str) -> LoadedBase:
        """The loaded base model, loading it (and evicting idle ones) when needed."""
        with self.lock:
            if base_id in self._bases:
                with self._meta:
                    self._bases.move_to_end(base_id)
                return self._bases[base_id]
            # Evict before loading when the size is known, so two models never coexist needlessly.
            self._fit_budget(self._expected_bytes(base_id), keep=None)
            loaded = load_model(
                base_id, data_dir=self.data_dir, device=self.device, dtype=self.dtype
            )
            self.load_count[base_id] += 1
            params = {id(p): p for p in loaded.model.parameters()}.values()
            weight_bytes = sum(p.numel() * p.element_size() for p in params)
            if weight_bytes > self.memory_budget_bytes:
                del loaded
                free_memory()
                raise MemoryBudgetExceeded(
                    f"{base_id} needs {weight_bytes} bytes, more than the inference memory "
                    f"budget of {self.memory_budget_bytes} bytes"
                )
            self._known_bytes[base_id] = weight_bytes
            self._fit_budget(weight_bytes, keep=None)
            context = loaded.info.context_length or DEFAULT_CONTEXT
            if self.max_context is not None:
                context = min(context, self.max_context)
            runner = make_runner(loaded.model, max_rows=self.max_batch_size, max_length=context)
            vocab = loaded.model.get_output_embeddings().weight.shape[0]
            base = LoadedBase(
                base_id, loaded, runner, weight_bytes, context, _eos_ids(loaded), vocab
            )
            with self._meta:
                self._bases[base_id] = base
            return base

    def evict_base(self, base_id: str) -> None:
        """Drop a base model and its adapters and free their memory (no-op if not loaded)."""
        with self.lock:
            if self._pinned(base_id):
                raise RuntimeError(f"{base_id} is in use by active sequences")
            with self._meta:
                base = self._bases.pop(base_id, None)
            if base is None:
                return
            del base
            free_memory()

    # -- adapters ----------------------------------------------------------------------------

    def register_adapter(self, base_id: str, adapter_id: str, adapter_path: str | Path) -> None:
        """Remember where an adapter lives; it is loaded when first needed. Never blocks long."""
        with self._meta:
            self._adapter_paths[(base_id, adapter_id)] = Path(adapter_path)

    def loaded_adapters(self, base_id: str) -> list[str]:
        """Adapters attached to a loaded base, least recently used first."""
        with self._meta:
            base = self._bases.get(base_id)
            return list(base.adapters) if base else []

    def ensure_adapter(
        self, base_id: str, adapter_id: str, adapter_path: str | Path | None = None
    ) -> LoadedBase:
        """Attach a PEFT LoRA or DoRA adapter to the (loaded or now loaded) base; never reloads it.

        adapter_path may be omitted for a registered adapter. Raises UnknownAdapter,
        UnsupportedAdapter or MemoryBudgetExceeded.
        """
        with self.lock:
            if adapter_path is not None:
                self.register_adapter(base_id, adapter_id, adapter_path)
            with self._meta:
                path = self._adapter_paths.get((base_id, adapter_id))
            if path is None:
                raise UnknownAdapter(f"adapter {adapter_id!r} is not registered for {base_id}")
            base = self.ensure_base(base_id)
            if adapter_id in base.adapters:
                with self._meta:
                    base.adapters.move_to_end(adapter_id)
                return base
            adapter = read_lora_adapter(adapter_id, path)
            spare = [a for a in base.adapters if not self._pins[(base_id, a)]]
            if len(base.adapters) >= self.max_adapters_per_base and spare:
                self._detach(base, spare[0])
            nbytes = base.runner.attach(adapter)
            with self._meta:
                base.adapters[adapter_id] = nbytes
            try:
                self._fit_budget(0, keep=base_id)
            except MemoryBudgetExceeded:
                self._detach(base, adapter_id)
                raise
            return base

    def _detach(self, base: LoadedBase, adapter_id: str) -> None:
        base.runner.detach(adapter_id)
        with self._meta:
            base.adapters.pop(adapter_id, None)

    # -- use by the scheduler ----------------------------------------------------------------

    def acquire(self, base_id: str, adapter_id: str | None) -> LoadedBase:
        """Load what a request needs and pin it against eviction until release()."""
        with self.lock:
            if adapter_id is None:
                base = self.ensure_base(base_id)
            else:
                base = self.ensure_adapter(base_id, adapter_id)
            self._pins[(base_id, adapter_id)] += 1
            return base

    def release(self, base_id: str, adapter_id: str | None) -> None:
        with self.lock:
            self._pins[(base_id, adapter_id)] -= 1
            if self._pins[(base_id, adapter_id)] <= 0:
                del self._pins[(base_id, adapter_id)]

    def score(self, base_id: str, adapter_id: str | None, ids: list[int]) -> torch.Tensor:
        """Float32 logits [len(ids), vocab] at every position of `ids`, through the adapter
        (None: the base), by the runner that serves chat (see Runner.score).

        Holds `lock` throughout, so it runs between scheduler steps and leaves their sequences
        untouched. Raises what acquire() raises, and RuntimeError/ValueError from Runner.score.
        """
        with self.lock:
            base = self.acquire(base_id, adapter_id)
            try:
                return base.runner.score(ids, adapter_id)
            finally:
                self.release(base_id, adapter_id)

    def encode_prompt(self, base: LoadedBase, request: GenerationRequest) -> list[int]:
        """Token ids of the request's conversation, rendered with its chat template.

        MUST render exactly as training does (resolve_template, add_generation_prompt, no extra
        special tokens). Raises ChatFormatError or PromptTooLong.
        """
        messages = request_conversation(request)
        tokenizer = base.loaded.tokenizer
        _, jinja = resolve_template(tokenizer, request.template)
        try:
            text = tokenizer.apply_chat_template(
                messages, chat_template=jinja, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja raises its own types, and templates call raise_exception
            raise ChatFormatError(f"the chat template failed on this conversation: {exc}") from exc
        ids = list(tokenizer(str(text), add_special_tokens=False)["input_ids"])
        if len(ids) > base.context_length:
            raise PromptTooLong(len(ids), base.context_length)
        return ids
