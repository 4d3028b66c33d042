"""`bench`'s reading row: the cache's embeddings read as `train`, `evaluate` and `report` read
them (`Cache.load_embeddings`), against the file's plain sequential read, side by side and
each from the disk (the file dropped from the page cache first, where the system allows)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from floodcache.bench.table import PeakMemory, Row
from floodcache.cache.loading import READ_BYTES
from floodcache.cache.reader import Cache


def drop_from_page_cache(path: Path) -> bool:
    """Ask the system to forget `path`'s cached pages, so that the next read comes from the
    disk; False where it cannot be asked (no posix_fadvise)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
    return True


def plain_read(path: Path) -> tuple[int, float]:
    """(bytes, seconds) of reading the whole file in READ_BYTES blocks."""
    start, total = time.perf_counter(), 0
    with open(path, "rb", buffering=0) as stream:
        while block := stream.read(READ_BYTES):
            total += len(block)
    return total, time.perf_counter() - start


def reading_row(cache: Path) -> Row:
    """The embeddings of every view, loaded as the stages load them, against the plain read."""
    cold = drop_from_page_cache(cache)
    plain_bytes, plain_seconds = plain_read(cache)
    drop_from_page_cache(cache)
    with Cache.open(cache) as opened, PeakMemory(torch.device("cpu")) as peak:
        start = time.perf_counter()  # the checks' own reads (targets, masks) counted too
        loader = opened.load_embeddings(opened.rows())
        loader.result()
        seconds, stats = time.perf_counter() - start, loader.stats
    plain = plain_bytes / 2**20 / plain_seconds
    rate = stats.bytes / 2**20 / seconds
    share = rate / plain if plain else 0.0
    where = "from the disk" if cold else "from the page cache (no posix_fadvise here)"
    note = (
        f"{rate:.0f} MiB/s of embeddings, each view checked against its sha256, {share:.0%} "
        f"of the file's plain sequential read ({plain:.0f} MiB/s, "
        f"{plain_bytes / 2**20:.0f} MiB), both {where}"
    )
    megabytes = peak.megabytes()
    return Row("cache read", "-", stats.views, stats.views, seconds, megabytes, note=note)
