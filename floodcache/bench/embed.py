"""`bench`'s embed stages: the `embed` command end to end, on generated scenes (or real data)
read from disk, for each resize; then its reader processes alone, the rate they can feed
the GPU; and each embed row's share of the encoder alone."""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from floodcache.bench.config import BenchConfig
from floodcache.bench.encoders import fast_stage
from floodcache.bench.table import Bench, PeakMemory, Row
from floodcache.cache.removal import wait_for_removals
from floodcache.data.synthetic import write_scene
from floodcache.embed.background import background_processes
from floodcache.embed.config import EmbedConfig
from floodcache.embed.plan import pending_batches, plan_embed
from floodcache.embed.readers import (
    Handover,
    ReaderTimes,
    default_workers,
    described,
    read_batches,
)
from floodcache.embed.run import run_embed
from floodcache.sam.fast_encoder import compile_wanted, default_attention
from floodcache.sam.precision import resolve_precision


def dataset(config: BenchConfig, tmp: Path) -> tuple[Path, int]:
    """A data folder holding enough images for `views` views, and the augmentation to ask.

    Generated scenes are made by processes on every core but one: thousands of scenes take
    a while in one process."""
    augment = min(3, config.views - 1)
    if config.data_dir:
        return Path(config.data_dir), augment
    root = tmp / "data"
    (root / "Image").mkdir(parents=True)
    (root / "Mask").mkdir()
    count = _images(config, augment)
    pool = background_processes(min(default_workers(), count))
    try:
        list(pool.map(write_scene, [root] * count, range(count), chunksize=8))
    finally:
        pool.shutdown()
    return root, augment


def _images(config: BenchConfig, augment: int) -> int:
    """Images for embed's views (`embed_views` if more than `views`), each with `augment`
    augmented views besides itself."""
    return math.ceil(max(config.views, config.embed_views or 0) / (augment + 1))


def embed_settings(
    config: BenchConfig,
    data_dir: Path,
    augment: int,
    cache: Path,
    device: torch.device,
    resize: str,
) -> EmbedConfig:
    """embed's settings for bench's views, as a user gets them by default, but for all
    views in training (so that each image gets its augmented views) and no progress bar."""
    return EmbedConfig(
        cache=cache,
        data_dir=data_dir,
        checkpoint=config.checkpoint,
        random_weights=config.checkpoint is None,
        model_type=config.model_type,
        augment=augment,
        fractions=(1.0, 0.0, 0.0),
        limit=_images(config, augment),
        batch_size=config.batch_size,
        workers=config.workers,
        resize=resize,
        device=str(device),
        compile=compile_wanted(device),
        progress=False,
        command="python cli.py bench",
    )


def embed_stage(
    config: BenchConfig,
    data_dir: Path,
    augment: int,
    cache: Path,
    device: torch.device,
    resize: str,
):
    """`embed` end to end with `resize`, in this process (its reader processes are its own),
    with the settings a user gets by default; on a GPU compiled, as a long run is. Then its
    readers alone over the same views: the rate the GPU can be fed at. [embed row, readers']"""
    cache.unlink(missing_ok=True)  # each resize makes its own cache
    settings = embed_settings(config, data_dir, augment, cache, device, resize)
    with PeakMemory(device) as peak:
        result = run_embed(settings)
    removed = wait_for_removals(cache)  # not to slow the readers' row down
    note = (
        f"{described(result.workers)}, resize {settings.resize}; "
        f"{result.views_per_second:.3g} views/s over the whole run, "
        f"{result.warmup_seconds:.1f} s to the first batch (audit, model load, compiling), "
        f"{result.finalize_seconds:.1f} s finishing the cache after the last batch, its "
        f"parts removed in the background {removed:.1f} s after"
    )
    # After the first batch, as a long run goes on; a run of one batch has only the whole.
    steady = result.embedded > result.warmup_views
    row = Row(
        "embed (after 1st batch)" if steady else "embed (whole run)",
        resolve_precision(settings.precision, device),
        result.batch_size,
        result.embedded - result.warmup_views if steady else result.embedded,
        result.seconds - result.warmup_seconds if steady else result.seconds,
        peak.megabytes(),
        note=note,
    )
    return [row, _readers(settings, result.batch_size, result.workers)]


def _readers(settings: EmbedConfig, batch_size: int, workers: int) -> Row:
    """embed's reader processes alone (read, decode, augment, resize, encode previews), with
    the CPU they and this process used: CPU seconds per wall second is the cores they had."""
    plan, pairs, _ = plan_embed(settings)
    before, start = os.times(), time.perf_counter()
    pending = pending_batches(plan, set(), batch_size)
    times = ReaderTimes()
    views, first = 0, None  # (views, time, reader times) once the first batch is read
    for batch in read_batches(pending, pairs, settings, workers, Handover(True, times=times)):
        views += len(batch)
        if first is None:
            first = (views, time.perf_counter(), replace(times))
    end = time.perf_counter()
    seconds = end - start
    used = [after - earlier for after, earlier in zip(os.times(), before, strict=True)]
    readers_cpu = used[2] + used[3] if workers else used[0] + used[1]  # reaped children
    assert first is not None, "the bench's data holds one batch of views at least"
    counted, counted_seconds = views - first[0], end - first[1]
    rate = "the rate they can feed it"
    if counted:
        rate += (
            f" after the first batch, as embed's row ({views / seconds:.1f} views/s from the "
            "readers' start)"
        )
    else:  # one batch: the whole run
        counted, counted_seconds = views, seconds
    note = (
        f"{described(workers)}, resize {settings.resize}, no encoder: {rate}; over the whole "
        f"run {readers_cpu / views * 1000:.1f} ms of reader CPU a view, "
        f"{readers_cpu / seconds:.1f} cores busy, "
        f"{(used[0] + used[1]) / views * 1000:.1f} ms of this process's CPU a view"
    )
    if workers and counted < views:
        note += "; after the first batch " + (times - first[2]).line(workers, counted_seconds)
    return Row("embed readers alone", "-", batch_size, counted, counted_seconds, 0.0, note=note)


def compare_embed(bench: Bench, device: torch.device) -> None:
    """Add to each embed row's note its rate as a share of the encoder alone, as embed ran."""
    compiled = compile_wanted(device)
    alone = fast_stage(default_attention(device), compiled)
    for row in (r for r in bench.rows if r.stage.startswith("embed (")):
        same = [r for r in bench.rows if (r.stage, r.precision) == (alone, row.precision)]
        if same:
            share = row.views_per_second / same[0].views_per_second
            row.note = f"{share:.0%} of {alone} {row.precision}; {row.note}"
