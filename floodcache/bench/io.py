"""`bench`'s cache I/O stages, on the views of the cache `bench` built.

- compression: bytes per view, write and read times of the float16 embeddings per filter;
- writing: `embed`'s writing side alone (parts, then the one cache), done in line by the main
  process against the writer processes and assembler that `embed` uses (`embed.part_writer`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from floodcache.cache.assembly import assemble
from floodcache.cache.format import FIELDS, STR
from floodcache.cache.reader import Cache
from floodcache.cache.removal import wait_for_removals
from floodcache.cache.writer import CacheWriter
from floodcache.data.views import ViewKey
from floodcache.embed.part_writer import Assembler, PartWriter

COMPRESSION_VIEWS = 64  # views written with each filter: enough for bytes and ms per view
COMPRESSIONS: dict[
    str, dict[str, Any]
] = {  # name -> h5py create_dataset keywords for the float16 embeddings
    "none": {},
    "lzf": {"compression": "lzf"},
    "gzip-1": {"compression": "gzip", "compression_opts": 1},
    "shuffle+gzip-4": {"shuffle": True, "compression": "gzip", "compression_opts": 4},
}
WRITING_VIEWS = 256  # views written each way: 8 batches of 32


def compression(cache: Path, path: Path) -> list[dict]:
    """Write and read the cache's float16 embeddings with each filter: bytes and times."""
    with Cache.open(cache) as opened:
        embeddings = opened.embeddings(np.arange(min(len(opened), COMPRESSION_VIEWS)))
    n = len(embeddings)
    results: list[dict[str, Any]] = []
    for name, options in COMPRESSIONS.items():
        start = time.perf_counter()
        with h5py.File(path, "w") as f:
            f.create_dataset("e", data=embeddings, chunks=(1, *embeddings.shape[1:]), **options)
        write = time.perf_counter() - start
        start = time.perf_counter()
        with h5py.File(path, "r") as f:
            f["e"][:]
        read = time.perf_counter() - start
        size = path.stat().st_size / n
        results.append(
            {
                "filter": name,
                "bytes_per_view": size,
                "saved": 1 - size / results[0]["bytes_per_view"] if results else 0.0,
                "write_ms_per_view": 1000 * write / n,
                "read_ms_per_view": 1000 * read / n,
            }
        )
    path.unlink()
    return results


def writing(cache: Path, folder: Path, batch: int, views: int = WRITING_VIEWS) -> dict:
    """`views` views (the cache's, repeated) written as parts of `batch` views and assembled
    into one cache: by the main process in line, then as `embed` does it. Milliseconds a view
    for each, and the CPU the main process spent per view in the second."""
    records = _records(cache, views)
    plan = [ViewKey(r["image_id"], r["view"], r["split"]) for r in records]
    batches = [records[start : start + batch] for start in range(0, len(records), batch)]
    in_line, _ = _write(folder / "in_line.h5", plan, batches, background=False)
    background, main_cpu = _write(folder / "background.h5", plan, batches, background=True)
    return {
        "views": len(records),
        "batch": batch,
        "in_line_ms_per_view": 1000 * in_line / len(records),
        "background_ms_per_view": 1000 * background / len(records),
        "main_cpu_ms_per_view": 1000 * main_cpu / len(records),
        "speedup": in_line / background,
    }


def _records(cache: Path, views: int) -> list[dict]:
    """`views` records of every cache field: the cache's views over and over, each copy
    named as a view of its own."""
    with Cache.open(cache) as opened:
        rows = [
            {name: opened.file[name][row] for name in FIELDS if name != "view_sha256"}
            for row in range(len(opened))
        ]
    records = []
    for index in range(views):
        record = dict(rows[index % len(rows)])
        for name, (_, dtype) in FIELDS.items():
            if dtype is STR and name in record:
                record[name] = record[name].decode()
        records.append(record | {"image_id": f"copy{index}", "view": 0})
    return records


def _write(
    path: Path, plan: list[ViewKey], batches: list[list[dict]], background: bool
) -> tuple[float, float]:
    """Seconds to write `batches` as parts and assemble them into `path` (removed after), and
    this process's CPU seconds meanwhile. The parts are removed in the background, as embed
    leaves them: waited for after the timing, so that they do not slow the next one."""
    identity = {"model_type": "bench", "checkpoint_sha256": "-"}
    start, cpu = time.perf_counter(), time.process_time()
    with CacheWriter(path, identity, {"identity": identity}, overwrite=True) as writer:
        if background:
            with Assembler(path, plan) as assembler:
                with PartWriter(writer, lambda *_: None, assembler) as parts:
                    for index, batch in enumerate(batches):
                        parts.submit([dict(r) for r in batch], f"{index:06d}")
                assembler.finish(writer.part_files(), identity, writer.config, {})
        else:
            for index, batch in enumerate(batches):
                writer.write_part([dict(r) for r in batch], f"{index:06d}")
            assemble(writer, plan, {})
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    wait_for_removals(path)
    path.unlink()
    return seconds, cpu
