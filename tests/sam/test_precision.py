"""What `auto` means on each device and stage, and bf16 on a CPU that emulates it."""

from __future__ import annotations

import pytest
import torch

from floodcache.sam import precision as sam_precision
from floodcache.sam.precision import resolve_precision

AVX2 = "fpu sse sse2 avx avx2 fma f16c"
AVX512 = AVX2 + " avx512f avx512dq avx512bw avx512vl avx512_vnni"  # no bf16 instructions


@pytest.fixture
def cpu(tmp_path, monkeypatch):
    """Make this process see a CPU with the flags given (None: no /proc/cpuinfo at all)."""

    def with_flags(flags: str | None) -> None:
        cpuinfo = tmp_path / "cpuinfo"
        if flags is not None:
            cpuinfo.write_text(f"processor\t: 0\nmodel name\t: a CPU\nflags\t\t: {flags}\n\n")
        monkeypatch.setattr(sam_precision, "CPUINFO", cpuinfo)
        sam_precision.cpu_flags.cache_clear()

    yield with_flags
    sam_precision.cpu_flags.cache_clear()


@pytest.mark.parametrize(
    ("flags", "encoder"),
    [
        (AVX2, "fp32"),
        (AVX512, "fp32"),  # AVX-512 alone emulates bf16: slower than fp32
        (AVX512 + " avx512_bf16", "bf16"),
        (AVX512 + " amx_bf16 amx_tile", "bf16"),
        (None, "fp32"),  # flags unknown: never the slow choice
    ],
)
def test_auto_on_a_cpu_is_bf16_only_where_the_cpu_has_native_bf16(cpu, flags, encoder):
    cpu(flags)
    assert resolve_precision("auto", torch.device("cpu")) == encoder
    assert resolve_precision("auto", torch.device("cpu"), "train") == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"  # the GPU's, whatever CPU
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # asked: kept


def test_auto_precision_is_fp16_on_a_gpu_and_fp32_on_a_cpu_without_bf16(cpu):
    cpu(AVX2)
    assert sam_precision.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert sam_precision.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert sam_precision.resolve_precision("bf16", torch.device("cpu")) == "bf16"  # asked: kept


@pytest.mark.parametrize("flags", [AVX512 + " avx512_bf16", AVX2])
def test_bf16_asked_on_a_cpu_that_emulates_it_is_warned_about_once(cpu, flags, caplog):
    cpu(flags)
    fast = "bf16" in flags
    sam_precision._warn_slow_bf16.cache_clear()
    for device, precision in [("cpu", "bf16"), ("cpu", "bf16"), ("cpu", "fp32"), ("cuda", "bf16")]:
        assert sam_precision.resolve_precision(precision, torch.device(device)) == precision
    assert sam_precision.resolve_precision("auto", torch.device("cpu")) == (
        "bf16" if fast else "fp32"
    )
    warnings = [r.getMessage() for r in caplog.records if "without fast bf16" in r.getMessage()]
    assert len(warnings) == (0 if fast else 1) and all("--precision at auto" in w for w in warnings)


def test_this_cpus_flags_are_read():
    """The real /proc/cpuinfo, where there is one: its flags hold the basics of any x86 CPU."""
    real = sam_precision.CPUINFO.__class__("/proc/cpuinfo")
    if not real.is_file() or "flags" not in real.read_text():
        pytest.skip("no x86 /proc/cpuinfo here")
    sam_precision.cpu_flags.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sam_precision, "CPUINFO", real)
            assert {"sse", "sse2"} <= sam_precision.cpu_flags()
    finally:
        sam_precision.cpu_flags.cache_clear()


def test_auto_training_precision_is_bf16_on_a_gpu_and_fp32_on_a_cpu():
    assert resolve_precision("auto", torch.device("cuda"), "train") == "bf16"
    assert resolve_precision("auto", torch.device("cpu"), "train") == "fp32"
    assert resolve_precision("bf16", torch.device("cpu"), "train") == "bf16"  # asked: kept
