"""Throughput probe: how fast this machine runs the matmuls LoRA training spends its time in.

A training worker runs it once at start (workers/heartbeat.py, in a subprocess:
`python -m workers.training.probe` prints the JSON) and publishes the figure with its
heartbeat; app/services/estimates.py turns it into tokens per second for the chosen model.

What it times: one transformer block's projections of the reference model (SmolLM2-135M:
hidden 576, 9 query heads and 3 key/value heads of 64, MLP 1536) on 1024 tokens, forward and
backward through frozen weights (input gradients only: LoRA computes no weight gradients for
the base), on the device and in the dtype train() would use there (precision "auto"). That
is ~15 GFLOP a pass: ~0.15 s on 2 AVX2 cores, microseconds on a GPU, so passes repeat until
BUDGET_S has elapsed. Never times an emulated bf16 matmul (minutes on CPUs without native
bf16): the dtype is the one plan_precision picks, which is bf16 on a CPU only when native.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch

from app.schemas.training import TrainingConfig
from workers.ml.device import dtype_name, pick_device
from workers.training.precision import plan_precision

PROBE_NAME = "block-matmul-v1"  # changes whenever what is timed changes (the unit changes)
TOKENS = 1024
HIDDEN, KV, MLP = 576, 192, 1536
# (in, out) of each projection of one block: q, k, v, o, gate, up, down.
PROJECTIONS = [
    (HIDDEN, HIDDEN),
    (HIDDEN, KV),
    (HIDDEN, KV),
    (HIDDEN, HIDDEN),
    (HIDDEN, MLP),
    (HIDDEN, MLP),
    (MLP, HIDDEN),
]
# Forward y = x W^T and backward dx = dy W: two matmuls of 2 * tokens * in * out FLOP each.
FLOP_PER_PASS = sum(2 * 2 * TOKENS * i * o for i, o in PROJECTIONS)
BUDGET_S = 0.5  # timing stops after this; two passes before it only warm up and size groups
GROUP_S, MAX_GROUP = 0.02, 1000
MIN_GROUPS = 3


@dataclass(frozen=True)
class Throughput:
    probe: str
    # The median of the timed groups: the typical speed of this moment, which is what training
    # steps see too (the calibration in app/services/estimates.py pairs them the same way).
    # Single passes scatter by ±25 % even on an idle 2-core machine.
    gflops: float
    device: str
    dtype: str
    threads: int
    passes: int
    seconds: float  # wall time of the whole probe, warm-up included
    measured_at: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Probe:
    """The probe's tensors on one device; `rate(passes)` times passes and returns FLOP/s.
    bench/bench_estimate.py also calls it between optimizer steps."""

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = pick_device(device)
        self.dtype = plan_precision(TrainingConfig(), self.device).compute_dtype
        gen = torch.Generator().manual_seed(0)

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen).to(device=self.device, dtype=self.dtype)

        self.weights = [rand(o, i) for i, o in PROJECTIONS]  # nn.Linear layout: (out, in)
        # Activations (forward inputs, backward output gradients) by width.
        self.acts = {n: rand(TOKENS, n) for n in {HIDDEN, KV, MLP}}

    def rate(self, passes: int = 1) -> float:
        began = time.perf_counter()
        with torch.no_grad():
            for _ in range(passes):
                for w in self.weights:
                    out_dim, in_dim = w.shape
                    torch.matmul(self.acts[in_dim], w.t())  # forward, as nn.Linear computes it
                    torch.matmul(self.acts[out_dim], w)  # backward to the input
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        return passes * FLOP_PER_PASS / (time.perf_counter() - began)


def measure(device: str | torch.device | None = None) -> Throughput:
    """Time the probe on `device` (default: what train() would pick) in train()'s dtype."""
    began = time.perf_counter()
    probe = Probe(device)
    probe.rate()  # warm-up: kernel selection, allocator, thread pool start
    # A GPU runs a pass in microseconds: time groups of passes lasting GROUP_S or more, so the
    # clock and the synchronisation do not dominate.
    group = max(1, min(MAX_GROUP, round(GROUP_S * probe.rate() / FLOP_PER_PASS)))
    rates: list[float] = []
    start = time.perf_counter()
    while len(rates) < MIN_GROUPS or time.perf_counter() - start < BUDGET_S:
        rates.append(probe.rate(group))
    return Throughput(
        probe=PROBE_NAME,
        gflops=round(statistics.median(rates) / 1e9, 2),
        device=probe.device.type,
        dtype=dtype_name(probe.dtype),
        threads=torch.get_num_threads(),
        passes=len(rates) * group,
        seconds=round(time.perf_counter() - began, 3),
        measured_at=time.time(),
    )


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per measurement (the heartbeat keeps the best of them)."""
    parser = argparse.ArgumentParser(prog="python -m workers.training.probe")
    parser.add_argument("--repeat", type=int, default=1, help="measurements to make")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between them")
    parser.add_argument("--device", default=None)
    parser.add_argument("--parent", type=int, default=None, help="exit when this pid is gone")
    args = parser.parse_args(argv)
    for i in range(args.repeat):
        deadline = time.monotonic() + (args.every if i else 0)
        while time.monotonic() < deadline:
            if args.parent is not None and os.getppid() != args.parent:
                return 0  # the worker died (SIGKILL): nobody reads these figures any more
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        sys.stdout.write(json.dumps(measure(args.device).as_dict()) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
