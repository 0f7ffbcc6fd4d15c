"""LoRA adapters applied per batch row, so requests for different adapters share a forward pass.

An adapter folder (PEFT's adapter_config.json + adapter_model.safetensors) is read into plain
tensors. A runner groups the base model's linear layers into projections (e.g. q, k and v fused
into one matmul); LoraBank stores each adapter per projection as A [rank, in] and
Bt [rank, out] with the LoRA scale folded in. For one decode step the bank builds a LoraPlan from
the batch's adapters: the A and Bt of every adapter in the batch are concatenated and a 0/1 mask
[rows, total_rank] keeps each row's own adapter columns, so

    y = x @ W.T + ((x @ A_cat.T) * mask) @ Bt_cat

costs two small matmuls per projection however many adapters the batch mixes (rows without an
adapter get an all-zero mask row). With a single adapter and no base rows the mask is skipped.

DoRA adapters (peft's `use_dora`) also carry a magnitude m per output feature; peft computes

    y = s * (x @ W.T + scale * B(A x)) + bias,   s = m / ||W + scale * B A|| (norm of each row)

s depends on the weights only, so the bank computes it once when the adapter is attached and a
plan carries it per row (1 for rows without a DoRA adapter): one multiply more per projection,
and only in batches that hold a DoRA row (see `project`).
"""

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from workers.inference.errors import UnsupportedAdapter

_PREFIX = "base_model.model."
_KEY = re.compile(r"^(?P<module>.+)\.(?:lora_(?P<part>[AB])\.weight|lora_magnitude_vector)$")


@dataclass(frozen=True)
class LoraModule:
    a: torch.Tensor  # [rank, in_features]
    b: torch.Tensor  # [out_features, rank]
    scale: float  # lora_alpha / rank (or / sqrt(rank) for rsLoRA)
    magnitude: torch.Tensor | None = None  # [out_features], DoRA only


@dataclass(frozen=True)
class LoraAdapter:
    adapter_id: str
    path: Path
    modules: dict[str, LoraModule]  # module path in the base model, e.g. model.layers.0.mlp.up_proj


def _pattern_value(patterns: dict[str, float], module: str, default: float) -> float:
    # Same matching rule as peft.utils.other.get_pattern_key.
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return default


def _check_config(config: dict, path: Path) -> None:
    problems = []
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        problems.append(f"peft_type {config.get('peft_type')!r} (only LORA is served)")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("trained biases")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']}")
    if config.get("trainable_token_indices") or config.get("layer_replication"):
        problems.append("trainable tokens or layer replication")
    if problems:
        raise UnsupportedAdapter(
            f"the adapter in {path} uses {', '.join(problems)}, which the inference engine "
            "cannot serve"
        )


def read_lora_adapter(adapter_id: str, path: str | Path) -> LoraAdapter:
    """Parse a PEFT LoRA adapter folder into float32 tensors. Raises UnsupportedAdapter."""
    from peft.utils import load_peft_weights  # peft is heavy; only adapter loading needs it

    folder = Path(path)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise UnsupportedAdapter(f"{folder} has no adapter_config.json: not a PEFT adapter")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    _check_config(config, folder)
    try:
        state = load_peft_weights(str(folder), device="cpu")
    except (OSError, ValueError, RuntimeError) as exc:
        raise UnsupportedAdapter(f"could not read the adapter weights in {folder}: {exc}") from exc
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _KEY.match(key.removeprefix(_PREFIX))
        if match is None:
            raise UnsupportedAdapter(
                f"the adapter in {folder} has a weight {key!r} that is not LoRA"
            )
        parts.setdefault(match["module"], {})[match["part"] or "M"] = tensor.float()
    modules = {}
    dora = bool(config.get("use_dora"))
    for module, ab in parts.items():
        if set(ab) - {"M"} != {"A", "B"} or ab["A"].shape[0] != ab["B"].shape[1]:
            raise UnsupportedAdapter(f"the adapter in {folder} has a broken LoRA pair for {module}")
        magnitude = ab.get("M")
        if dora != (magnitude is not None) or (
            magnitude is not None and magnitude.shape != (ab["B"].shape[0],)
        ):
            raise UnsupportedAdapter(
                f"the adapter in {folder} has a DoRA magnitude that does not match its "
                f"configuration for {module}"
            )
        rank = ab["A"].shape[0]
        alpha = _pattern_value(
            config.get("alpha_pattern") or {}, module, config.get("lora_alpha", rank)
        )
        scale = alpha / (rank**0.5 if config.get("use_rslora") else rank)
        modules[module] = LoraModule(a=ab["A"], b=ab["B"], scale=scale, magnitude=magnitude)
    if not modules:
        raise UnsupportedAdapter(f"the adapter in {folder} has no LoRA weights")
    return LoraAdapter(adapter_id=adapter_id, path=folder, modules=modules)


@dataclass(frozen=True)
class ProjectionGroup:
    """Base linear layers computed as one matmul: their outputs are concatenated in order."""

    in_features: int
    members: tuple[tuple[str, int], ...]  # (module path, out_features) in output order

    @property
    def out_features(self) -> int:
        return sum(size for _, size in self.members)


class PlanEntry(NamedTuple):
    """How one projection applies the batch's adapters in one step."""

    a: torch.Tensor  # [rank, in]
    bt: torch.Tensor  # [rank, out], scale folded in
    mask: torch.Tensor | None  # [rows, rank]: each row's own adapter columns; None: all rows
    dora: torch.Tensor | None  # [rows or 1, out] DoRA's s per row; None: no DoRA row


@dataclass(frozen=True)
class LoraPlan:
    entries: tuple[PlanEntry | None, ...]  # one per projection group, None: no LoRA there


def apply_lora(y: torch.Tensor, x: torch.Tensor, entry: PlanEntry | None) -> torch.Tensor:
    """y += LoRA(x) in place, for 2-D x [tokens, in] and y [tokens, out]; returns y.

    The LoRA weights may be stored in a wider dtype than the model (fp32 next to bf16 weights
    on CPU, where tiny bf16 matmuls cost ~7x more than fp32 ones); x is cast to it first.
    """
    if entry is None:
        return y
    a, bt, mask, _ = entry
    low = x.to(a.dtype) @ a.T
    if mask is not None:
        low *= mask
    if y.dtype == bt.dtype:
        return y.addmm_(low, bt)
    y += low @ bt
    return y


def project(
    x: torch.Tensor,
    weight: torch.Tensor,
    entry: PlanEntry | None,
    *,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """residual + x @ weight.T + bias, with the entry's LoRA (or DoRA) for x's rows."""
    if entry is None or entry.dora is None:
        if residual is None:
            return apply_lora(F.linear(x, weight, bias), x, entry)
        y = apply_lora(torch.addmm(residual, x, weight.T), x, entry)
        if bias is not None:
            y += bias
        return y
    # DoRA rescales the adapted product, never the bias or the residual.
    y = apply_lora(x @ weight.T, x, entry).mul_(entry.dora)
    if bias is not None:
        y += bias
    return y if residual is None else y.add_(residual)


def dora_scale(weight: torch.Tensor, module: LoraModule) -> torch.Tensor:
    """DoRA's s = m / ||W + scale * B A|| per output row, in float32 (peft's get_weight_norm)."""
    assert module.magnitude is not None
    merged = weight.detach().float() + module.scale * (module.b @ module.a).to(weight.device)
    return module.magnitude.to(weight.device) / torch.linalg.norm(merged, dim=1)


# A base linear layer's weight [out, in] by module path: DoRA's scale needs it.
BaseWeight = Callable[[str], torch.Tensor]


class _Fused(NamedTuple):
    """One adapter's weights for one projection group."""

    a: torch.Tensor  # [rank, in]
    bt: torch.Tensor  # [rank, out], scale folded in
    dora: torch.Tensor | None  # [1, out] DoRA's s (1 for plain-LoRA members); None: no DoRA


# Group members of an adapter: (module path, out start, out end, weights).
_Members = list[tuple[str, int, int, LoraModule]]


class LoraBank:
    """The adapters attached to one base model, fused per projection group."""

    def __init__(
        self,
        groups: Sequence[ProjectionGroup],
        *,
        dtype: torch.dtype,
        device: torch.device,
        base_weight: BaseWeight | None = None,
    ) -> None:
        self.groups = tuple(groups)
        self.dtype, self.device = dtype, device
        self.base_weight = base_weight
        self._where: dict[str, tuple[int, int, int]] = {}  # module -> (group, out start, out end)
        for index, group in enumerate(self.groups):
            start = 0
            for module, size in group.members:
                self._where[module] = (index, start, start + size)
                start += size
        self._adapters: dict[str, tuple[_Fused | None, ...]] = {}  # None: group not adapted

    def __contains__(self, adapter_id: object) -> bool:
        return adapter_id in self._adapters

    def add(self, adapter: LoraAdapter) -> int:
        """Attach an adapter (replacing one of the same id); returns the bytes it occupies."""
        per_group: list[_Members] = [[] for _ in self.groups]
        for module, weights in adapter.modules.items():
            if module not in self._where:
                raise UnsupportedAdapter(
                    f"adapter {adapter.adapter_id!r} adapts {module}, which this engine does not "
                    "serve with LoRA for this model (or which it does not have)"
                )
            index, start, end = self._where[module]
            group = self.groups[index]
            if weights.a.shape[1] != group.in_features or weights.b.shape[0] != end - start:
                raise UnsupportedAdapter(
                    f"adapter {adapter.adapter_id!r} does not fit this base model ({module} has "
                    f"other dimensions); was it trained on another model?"
                )
            per_group[index].append((module, start, end, weights))
        fused: list[_Fused | None] = []
        nbytes = 0
        for group, members in zip(self.groups, per_group, strict=True):
            if not members:
                fused.append(None)
                continue
            a = torch.cat([m.a for _, _, _, m in members])
            bt = torch.zeros(a.shape[0], group.out_features)
            row = 0
            for _, start, end, m in members:
                rank = m.a.shape[0]
                bt[row : row + rank, start:end] = (m.b * m.scale).T
                row += rank
            a = a.to(self.device, self.dtype).contiguous()
            bt = bt.to(self.device, self.dtype).contiguous()
            dora = self._dora_scale(adapter.adapter_id, group, members)
            nbytes += a.nbytes + bt.nbytes + (dora.nbytes if dora is not None else 0)
            fused.append(_Fused(a, bt, dora))
        self._adapters[adapter.adapter_id] = tuple(fused)
        return nbytes

    def _dora_scale(
        self, adapter_id: str, group: ProjectionGroup, members: _Members
    ) -> torch.Tensor | None:
        """DoRA's s over a group's outputs, [1, out], or None when no member uses DoRA."""
        if all(m.magnitude is None for _, _, _, m in members):
            return None
        if self.base_weight is None:
            raise UnsupportedAdapter(f"adapter {adapter_id!r} uses DoRA, which this runner lacks")
        scale = torch.ones(1, group.out_features)
        for module, start, end, m in members:
            if m.magnitude is not None:
                scale[0, start:end] = dora_scale(self.base_weight(module), m).cpu()
        return scale.to(self.device, self.dtype).contiguous()

    def remove(self, adapter_id: str) -> None:
        self._adapters.pop(adapter_id, None)

    def plan(self, row_adapters: Sequence[str | None]) -> LoraPlan | None:
        """How to apply LoRA to rows (one token each, or one row) using these adapters.

        None when no row uses an adapter. Built once per change of the batch, not per step.
        """
        active = list(dict.fromkeys(a for a in row_adapters if a is not None))
        if not active:
            return None
        uniform = len(active) == 1 and None not in row_adapters
        owner_of_row = torch.tensor(
            [active.index(a) if a is not None else -1 for a in row_adapters], device=self.device
        )
        entries: list[PlanEntry | None] = []
        for index, group in enumerate(self.groups):
            parts = [(k, self._adapters[a][index]) for k, a in enumerate(active)]
            present = [(k, p) for k, p in parts if p is not None]
            if not present:
                entries.append(None)
            elif uniform:
                only = present[0][1]
                entries.append(PlanEntry(only.a, only.bt, None, only.dora))
            else:
                a = torch.cat([p.a for _, p in present]) if len(present) > 1 else present[0][1].a
                bt = torch.cat([p.bt for _, p in present]) if len(present) > 1 else present[0][1].bt
                owner_of_col = torch.cat(
                    [torch.full((p.a.shape[0],), k, device=self.device) for k, p in present]
                )
                mask = (owner_of_row[:, None] == owner_of_col[None, :]).to(self.dtype)
                dora = None
                if any(p.dora is not None for _, p in present):
                    # One s row per adapter, then ones for base rows (owner -1 picks the last).
                    ones = torch.ones(1, group.out_features, device=self.device, dtype=self.dtype)
                    table = [p.dora if p and p.dora is not None else ones for _, p in parts]
                    dora = torch.cat([*table, ones])[owner_of_row]
                entries.append(PlanEntry(a, bt, mask, dora))
        return LoraPlan(tuple(entries))
