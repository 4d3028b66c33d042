"""The bench's encoder rows on a CPU say what `--precision auto` picks there, so that their
fp32 and bf16 timings confirm or refute that pick on the CPU at hand."""

from __future__ import annotations

import pytest
import torch

from floodcache.bench.encoders import cpu_precision_note
from floodcache.bench.table import Bench, Row
from floodcache.sam import precision as sam_precision

AVX2 = "fpu sse sse2 avx avx2 fma"


@pytest.fixture
def cpu(tmp_path, monkeypatch):
    """Make this process see a CPU with the flags given."""

    def with_flags(flags: str) -> None:
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\n")
        monkeypatch.setattr(sam_precision, "CPUINFO", cpuinfo)
        sam_precision.cpu_flags.cache_clear()

    yield with_flags
    sam_precision.cpu_flags.cache_clear()


def test_on_a_cpu_with_native_bf16_the_bench_says_auto_picks_bf16(cpu):
    cpu(AVX2 + " avx512f avx512_bf16")
    note = cpu_precision_note(torch.device("cpu"))
    assert "native bf16 (avx512_bf16)" in note and "auto picks bf16" in note


def test_on_a_cpu_without_native_bf16_the_bench_says_auto_picks_fp32(cpu):
    cpu(AVX2)
    note = cpu_precision_note(torch.device("cpu"))
    assert "no native bf16" in note and "auto picks fp32" in note


def test_the_note_heads_the_table_above_the_encoder_rows(cpu):
    cpu(AVX2)
    bench = Bench("cpu", "vit_tiny", "RANDOM WEIGHTS", 2)
    bench.precision_note = cpu_precision_note(torch.device("cpu"))
    bench.add(Row("reference SamPredictor", "fp32", 1, 2, 2.0, 100.0))
    lines = bench.table().splitlines()
    assert lines[1] == bench.precision_note
    assert bench.to_json()["precision_note"] == bench.precision_note


def test_a_gpu_bench_has_no_cpu_note():
    assert cpu_precision_note(torch.device("cuda")) == ""
