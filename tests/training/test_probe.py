"""The throughput probe a training worker publishes: its unit, device and dtype (not its speed:
figures go to bench/bench_estimate.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from app.schemas.training import TrainingConfig
from workers.training import precision, probe


def test_probe_measures_in_the_dtype_training_uses_here() -> None:
    figure = probe.measure("cpu")
    planned = precision.plan_precision(TrainingConfig(), torch.device("cpu"))
    assert figure.probe == probe.PROBE_NAME and figure.device == "cpu"
    assert figure.dtype == str(planned.compute_dtype).removeprefix("torch.")
    assert figure.gflops > 0 and figure.passes >= probe.MIN_GROUPS
    assert figure.threads == torch.get_num_threads()


def test_no_bf16_probe_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    # Which dtype the probe picks follows the native check that training's precision plan uses;
    # only building the tensors (no timing) for the bf16 case, which is emulated on many CPUs.
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert probe.Probe("cpu").dtype == torch.float32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert probe.Probe("cpu").dtype == torch.bfloat16


def test_the_web_reads_the_same_probe_unit() -> None:
    from app.services import estimates

    assert estimates.PROBE_NAME == probe.PROBE_NAME


def test_command_prints_one_json_line_per_measurement(capsys: Any) -> None:
    assert probe.main(["--repeat", "2", "--every", "0", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["probe"] for line in lines] == [probe.PROBE_NAME] * 2
