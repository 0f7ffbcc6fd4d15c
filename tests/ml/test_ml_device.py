"""Device and dtype choice."""

import pytest
import torch

from workers.ml import device as dev
from workers.ml.errors import DeviceUnavailable


def test_auto_device_follows_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dev.DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dev.pick_device().type == expected
    assert dev.pick_device("auto").type == expected


def test_override_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert dev.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv(dev.DEVICE_ENV, "cpu")
    assert dev.pick_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_missing_cuda_is_a_typed_error() -> None:
    with pytest.raises(DeviceUnavailable, match="no.*available|none is available"):
        dev.pick_device("cuda")


def test_unknown_device_is_a_typed_error() -> None:
    with pytest.raises(DeviceUnavailable, match="unknown device 'toaster'"):
        dev.pick_device("toaster")


def test_dtypes() -> None:
    assert dev.pick_dtype("cpu") is torch.float32
    if torch.cuda.is_available():
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert dev.pick_dtype("cuda") is expected
    assert dev.parse_dtype("bf16") is torch.bfloat16
    assert dev.parse_dtype("float16") is torch.float16
    assert dev.parse_dtype(torch.float32) is torch.float32
    assert dev.dtype_name(torch.bfloat16) == "bfloat16"
    with pytest.raises(ValueError, match="unsupported dtype"):
        dev.parse_dtype("int8")


def test_free_memory_runs() -> None:
    dev.free_memory()
