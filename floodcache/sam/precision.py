"""Precision: what `auto` means on each device and stage, and autocast to it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from floodcache.settings import (
    AUTO_PRECISION,
    CPU_PRECISION,
    GPU_PRECISION,
    PRECISIONS,
    check_precision,
)

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")  # where Linux lists the CPU's instruction-set flags
# The instructions that do bf16 matrix products in hardware; without them oneDNN emulates bf16
# with fp32 instructions and conversions, several times slower than plain fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

# Each precision's autocast dtype (fp32: no autocast).
DTYPES: dict[str, torch.dtype | None] = dict(
    zip(PRECISIONS, (None, torch.float16, torch.bfloat16), strict=True)
)


def resolve_precision(precision: str, device: torch.device, stage: str = "encoder") -> str:
    """`precision` for `stage` (a key of STAGE_PRECISIONS), with 'auto' made the stage's
    GPU_PRECISION on CUDA, its CPU_PRECISION on a CPU with native bf16, and fp32 elsewhere.
    ValueError for one the stage does not take."""
    check_precision(precision, stage)
    if precision == AUTO_PRECISION:
        if device.type == "cuda":
            return GPU_PRECISION[stage]
        return CPU_PRECISION[stage] if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        _warn_slow_bf16()
    return precision


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU does bf16 in hardware (AVX512_BF16 or AMX_BF16 among its flags).
    Where the flags cannot be read (no /proc/cpuinfo), no: fp32 is never the slow choice."""
    return bool(NATIVE_BF16_FLAGS & cpu_flags())


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the CPU's first core, as /proc/cpuinfo lists them."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def _warn_slow_bf16() -> None:  # once a process
    log.warning(
        "bf16 was asked for on a CPU without fast bf16 (no AVX512_BF16 or AMX_BF16 in "
        f"{CPUINFO}): it runs emulated, several times slower than fp32 here; leave "
        "--precision at auto (fp32 on this CPU)"
    )


@contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast the encoder to `precision` ('fp32' runs without autocast)."""
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
    dtype = DTYPES[precision]
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def pick_device(device: str | None) -> torch.device:
    """`device` as given, else CUDA when there is a GPU, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
