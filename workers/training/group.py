"""One training run across several processes: what train() needs when torchrun started it.

torchrun (workers/training/launch.py) starts N copies of workers.train_rank, each with
RANK, LOCAL_RANK and WORLD_SIZE in its environment. train() then calls `join_group`, which
joins the process group (gloo on the CPU, NCCL on CUDA with rank r on cuda:r) and returns a
Group; in a plain process it returns None and nothing here is used.

How the ranks split the work, so that N processes at batch b train like one process at batch
N x b (tests/training/test_distributed.py compares the two loss curves):
- every rank tokenizes the whole dataset and plans the same batches of N x b examples
  (LengthGroupedBatches is seeded, so the plans agree without any message);
- `Group.shard` gives rank r every N-th example of each such batch, starting at r: the batch is
  sorted by length, so each rank gets rows of about the same length;
- each rank divides its summed loss by the trainable tokens of the WHOLE window (all ranks'
  rows, which every rank can count) and multiplies by N, because DistributedDataParallel
  averages gradients over the ranks: the averaged gradient is the gradient of the mean loss
  over every trainable token of the window, as in one process;
- the reported loss is the sum of the ranks' shares (`Group.sum`), the eval loss sums the
  ranks' summed losses and token counts; rank 0 reads the stop flag and `agree` broadcasts it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from workers.training.errors import UnsupportedSetting

# The stop requests ranks can agree on; anything else rank 0 reads counts as "no request" on
# the other ranks (rank 0 logs it as ignored, as one process does).
_REQUESTS: tuple[str | None, ...] = (None, "stop", "cancel")


@dataclass(frozen=True)
class Group:
    rank: int
    world: int
    device: torch.device  # this rank's device: cuda:LOCAL_RANK, or cpu

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports, reads the stop flag and writes files."""
        return self.rank == 0

    def shard(self, batch: Sequence[int]) -> tuple[list[int], float]:
        """(this rank's examples of a global batch, weight of its loss).

        A batch with fewer examples than ranks (the short last batch of an epoch) leaves some
        ranks nothing: such a rank runs the batch's first example with weight 0, because DDP's
        all-reduce needs a backward from every rank; its gradient then counts for nothing."""
        own = list(batch[self.rank :: self.world])
        return (own, 1.0) if own else (list(batch[:1]), 0.0)

    def sum(self, *values: float) -> list[float]:
        """The values summed over all ranks (float64, so the sum does not depend on order)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]

    def agree(self, request: str | None) -> str | None:
        """Rank 0's stop request on every rank (rank 0 keeps its own value, even an unknown
        one, so it can log it); called by all ranks after each step, so stop and cancel end the
        whole group at the same step."""
        code = _REQUESTS.index(request) if request in _REQUESTS else -1
        tensor = torch.tensor([code], dtype=torch.int64, device=self.device)
        dist.broadcast(tensor, src=0)
        if self.is_main:
            return request
        agreed = int(tensor.item())
        return _REQUESTS[agreed] if agreed >= 0 else None

    def reseed(self, seed: int, step: int) -> None:
        """Seed this rank's LoRA dropout for `step`: ranks draw different masks, and a resumed
        group draws the same ones as an uninterrupted run (a checkpoint holds rank 0's RNG only,
        so restoring it would give every rank rank 0's generator)."""
        torch.manual_seed(((seed * 1_000_003 + step) * 1_009 + self.rank) % (1 << 63))


def join_group(device: torch.device) -> Group | None:
    """The process group when torchrun started this process with WORLD_SIZE > 1, else None.

    Joins it on first call (a rank that calls train() again reuses it). On CUDA each rank takes
    cuda:LOCAL_RANK, so `device` only says which kind of device to use."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:  # MPS has no collective backend in torch
        raise UnsupportedSetting(
            f"training with several processes needs CUDA or the CPU, not {device}"
        )
    if not dist.is_initialized():
        # device_id binds NCCL to this rank's GPU at once (no guessing on the first collective).
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return Group(rank, world, device)


def leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _LossModule(nn.Module):
    """The model and its loss as one module, so that DistributedDataParallel's forward runs the
    loss function (which calls the decoder and output head itself, not the model's forward)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[..., Any], dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.dtype = dtype

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return self.loss_fn(self.model, batch, self.dtype)  # type: ignore[no-any-return]


def wrap_ddp(
    model: nn.Module, loss_fn: Callable[..., Any], dtype: torch.dtype, group: Group
) -> DistributedDataParallel:
    """DistributedDataParallel over the LoRA model and its loss: calling it with a batch
    returns (summed loss, trainable tokens) and its backward all-reduces the LoRA gradients.

    Only the trainable (LoRA) tensors take part: the frozen base weights and the buffers are
    the same on every rank (loaded from the same files), so broadcasting them at start, as DDP
    does by default, would copy the whole base model for nothing (and 4-bit QLoRA weights are
    not plain tensors). The LoRA weights are broadcast from rank 0 at construction."""
    module = _LossModule(model, loss_fn, dtype)
    frozen = [name for name, p in module.named_parameters() if not p.requires_grad]
    frozen += [name for name, _ in module.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, frozen)
    device_ids = [group.device.index] if group.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)
