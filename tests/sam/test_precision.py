"""What `auto` means on each device and stage, and bf16 on a CPU that emulates it."""

from __future__ import annotations

import pytest
import torch

from floodcache.sam import precision as sam_precision
from floodcache.sam.precision import resolve_precision


def test_auto_precision_is_fp16_on_a_gpu_and_fp32_elsewhere():
    assert sam_precision.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert sam_precision.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert sam_precision.resolve_precision("bf16", torch.device("cpu")) == "bf16"  # asked: kept


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_asked_on_a_cpu_that_emulates_it_is_warned_about_once(fast, monkeypatch, caplog):
    monkeypatch.setattr(sam_precision, "cpu_has_fast_bf16", lambda: fast)
    sam_precision._warn_slow_bf16.cache_clear()
    for device, precision in [("cpu", "bf16"), ("cpu", "bf16"), ("cpu", "fp32"), ("cuda", "bf16")]:
        assert sam_precision.resolve_precision(precision, torch.device(device)) == precision
    assert sam_precision.resolve_precision("auto", torch.device("cpu")) == "fp32"
    warnings = [r.getMessage() for r in caplog.records if "without fast bf16" in r.getMessage()]
    assert len(warnings) == (0 if fast else 1) and all("--precision at auto" in w for w in warnings)


def test_a_cpu_without_avx_512_has_no_fast_bf16():
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "DEFAULT"):
        pytest.skip("an AVX-512 CPU: oneDNN's answer depends on its bf16 instructions")
    assert sam_precision.cpu_has_fast_bf16() is False


def test_auto_training_precision_is_bf16_on_a_gpu_and_fp32_on_a_cpu():
    assert resolve_precision("auto", torch.device("cuda"), "train") == "bf16"
    assert resolve_precision("auto", torch.device("cpu"), "train") == "fp32"
    assert resolve_precision("bf16", torch.device("cpu"), "train") == "bf16"  # asked: kept
