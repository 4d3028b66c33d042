"""Precision: what `auto` means on each device and stage, and autocast to it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from floodcache.settings import AUTO_PRECISION, GPU_PRECISION, PRECISIONS, check_precision

log = logging.getLogger(__name__)

# Each precision's autocast dtype (fp32: no autocast).
DTYPES: dict[str, torch.dtype | None] = dict(
    zip(PRECISIONS, (None, torch.float16, torch.bfloat16), strict=True)
)


def resolve_precision(precision: str, device: torch.device, stage: str = "encoder") -> str:
    """`precision` for `stage` (a key of STAGE_PRECISIONS), with 'auto' made the stage's
    GPU_PRECISION on CUDA and fp32 elsewhere. ValueError for one the stage does not take."""
    check_precision(precision, stage)
    if precision == AUTO_PRECISION:
        return GPU_PRECISION[stage] if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        _warn_slow_bf16()
    return precision


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 and up). Without them bf16 is
    emulated, several times slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without oneDNN: nothing to say
        return True


@functools.cache
def _warn_slow_bf16() -> None:  # once a process
    log.warning(
        "bf16 was asked for on a CPU without fast bf16 (no AVX-512): it runs emulated, "
        "several times slower than fp32 here; leave --precision at auto (fp32 on a CPU)"
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
