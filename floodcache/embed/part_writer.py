"""`embed`'s writing side, in background processes while the encoder goes on: the cache parts
(`PartWriter`), and the cache assembled from them as they are written (`Assembler`).

Processes, not threads: h5py holds the GIL while it writes. On a fast GPU the main thread
has a few milliseconds a view to take the readers' views and drive the GPU, and a writer
thread sharing its GIL would take most of them (the HDF5 write and checksums of 2 MiB a
view).
The embeddings go to the writers through shared memory where /dev/shm has room for them,
else pickled through a pipe.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, wait
from contextlib import suppress
from pathlib import Path

import numpy as np
import torch

from floodcache.cache import assembly
from floodcache.cache import writer as cache_writer
from floodcache.cache.format import EMBEDDING_SHAPE
from floodcache.cache.writer import CacheWriter
from floodcache.data.views import ViewKey
from floodcache.embed import shared_memory
from floodcache.embed.background import background_processes

# A part costs a few milliseconds of CPU a view (digest, checksums, write): on a machine
# with many cores, a third writer keeps the writing well ahead of a fast GPU.
WRITER_PROCESSES = 3 if (os.cpu_count() or 1) >= 12 else 2
PARTS_IN_FLIGHT = 3  # batches handed to the writers, not yet written: bounds memory


class PartWriter:
    """Writes batches as cache parts in background processes while the next ones encode.

    At most `depth` parts wait, each holding a batch's embeddings (64 MiB at 32 views), in
    memory shared with the writers where /dev/shm has room for them all. A failed write
    raises its CacheError in the caller at the next `submit` or at the end of the `with`
    block. Leaving the block for any reason, Ctrl-C included, first
    waits until every part handed over is written or has failed (`writer.write_part`
    renames a part into place only when whole): finished work is kept, nothing half written.
    `written(views, finished)` is called in the caller's process for each part written, in
    order, with the time.perf_counter() at which its write finished, after the part went to
    `assembler` (if any). `busy` and `waited` add up the seconds the writers spent writing
    and the caller spent waiting for them.

    `memory(views)` lends the memory a batch's embeddings can be put in before `submit`: then
    they are not copied again. With `pin` (CUDA) it is page-locked where shared, so that the
    GPU copies the embeddings straight there.
    """

    def __init__(
        self,
        writer: CacheWriter,
        written: Callable[[int, float], None],
        assembler: Assembler | None = None,
        processes: int = WRITER_PROCESSES,
        depth: int = PARTS_IN_FLIGHT,
        pin: bool = False,
    ):
        self.parts, self.written, self.assembler = writer.parts, written, assembler
        self.processes, self.depth, self.pin = processes, depth, pin
        self.lent: dict[int, torch.Tensor] = {}  # memory(): data pointer -> block
        self.locked: list[torch.Tensor] = []  # blocks page-locked for CUDA
        self.pool = background_processes(processes)
        # Parts handed over, oldest first, each with its batch's memory if it is the batch's
        # last part (then the memory is free and `written` hears of the batch).
        self.pending: deque[tuple[Future, torch.Tensor | None]] = deque()
        self.batch_views = 0  # views in the parts collected of a batch not whole yet
        self.blocks: list[torch.Tensor] = []  # memory free for the next batches
        self.shared: bool | None = None  # embeddings through shared memory (decided at once)
        self.busy = self.waited = 0.0

    def memory(self, views: int) -> np.ndarray:
        """Room for `views` embeddings (float16), for the batch `submit` is given next."""
        self._share_if_room(views)
        block = self._block(views)
        self.lent[block.data_ptr()] = block
        return block[:views].numpy()

    def submit(self, records: list[dict], name: str | None = None, last: bool = False) -> None:
        """Hand over a batch of finished views (dicts of every cache field) as part `name`
        (default: `part_name` of its first view). The run's `last` batch is cut into one
        part per writer process, each named after its first view, written side by side:
        the end of the run waits for it."""
        while self.pending and (len(self.pending) >= self.depth or self.pending[0][0].done()):
            self._collect_oldest()
        self._share_if_room(len(records))
        rows = [record["embeddings"] for record in records]
        block = self.lent.pop(rows[0].ctypes.data, None)
        embeddings = block[: len(records)] if block is not None else None
        if embeddings is None or not _rows_of(rows, embeddings):
            if block is not None:
                self.blocks.append(block)
            block = self._block(len(records))
            embeddings = block[: len(records)]
            # numpy copies on this thread; torch would wake its thread pool, which then spins
            for row, embedding in zip(embeddings.numpy(), rows, strict=True):
                row[...] = embedding
        rest = [{k: v for k, v in record.items() if k != "embeddings"} for record in records]
        sent = embeddings if self.shared else embeddings.numpy()  # else pickled, by pipe
        cuts = np.linspace(0, len(records), min(self.processes if last else 1, len(records)) + 1)
        pieces = list(itertools.pairwise(cuts.astype(int).tolist()))
        for start, stop in pieces:
            piece = rest[start:stop]
            named = name if len(pieces) == 1 and name else part_name(piece[0])
            future = self.pool.submit(_write_part, self.parts, piece, sent[start:stop], named)
            self.pending.append((future, block if stop == len(records) else None))

    def _share_if_room(self, views: int) -> None:
        """Decide, at the first batch (the largest), whether embeddings go in shared memory."""
        if self.shared is None:
            needed = (self.depth + 2) * views * math.prod(EMBEDDING_SHAPE) * 2
            self.shared = shared_memory.room() >= needed

    def _block(self, views: int) -> torch.Tensor:
        """Memory for `views` embeddings (shared, where /dev/shm has room): a block a written
        part gave back, or a new one. Reused, because new memory costs more than the copy into
        it (page faults)."""
        if self.blocks and len(self.blocks[-1]) >= views:
            return self.blocks.pop()
        block = torch.empty((views, *EMBEDDING_SHAPE), dtype=torch.float16)
        if not self.shared:
            return block
        block.share_memory_()
        if self.pin and shared_memory.page_lock(block):
            self.locked.append(block)
        return block

    def _collect_oldest(self) -> None:
        future, block = self.pending.popleft()
        start = time.perf_counter()
        began, finished, part, views = future.result()  # a failed write raises here
        self.waited += time.perf_counter() - start
        self.busy += finished - began
        if self.assembler is not None:
            self.assembler.add(part)
        self.batch_views += views
        if block is not None:  # the batch's last part
            self.blocks.append(block)
            self.written(self.batch_views, finished)
            self.batch_views = 0

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            while self.pending and error is None:
                self._collect_oldest()
        finally:
            wait([future for future, _ in self.pending])  # only after an error: they may fail
            self.pool.shutdown()
            for block in self.locked:
                shared_memory.page_unlock(block)


def _rows_of(rows: list[np.ndarray], block: torch.Tensor) -> bool:
    """Whether `rows` are `block`'s rows, in order."""
    start, step = block.data_ptr(), block[0].nbytes
    return all(row.ctypes.data == start + i * step for i, row in enumerate(rows))


def part_name(record: dict) -> str:
    """A part's name, from its first view: unique, since a view is written in one part."""
    return f"{record['image_id']}-{record['view']:04d}"


def _write_part(
    parts: Path, records: list[dict], embeddings: torch.Tensor | np.ndarray, name: str
) -> tuple[float, float, Path, int]:
    """In a writer process: (start, finish) perf_counter times, the part written, its views."""
    start = time.perf_counter()
    for record, embedding in zip(records, np.asarray(embeddings), strict=True):
        record["embeddings"] = embedding
    part = cache_writer.write_part(parts, records, name)
    return start, time.perf_counter(), part, len(records)


class Assembler:
    """An `assembly.Assembly` in a background process: `add` hands it each part once
    written, and `finish` completes the cache with what is left, so embed does not end by
    copying every embedding again (on a fast GPU, more than half the time encoding a view
    takes).

    Leaving the `with` block unfinished (an error, Ctrl-C) removes the unfinished .tmp file;
    the parts stay, and rerunning the command rebuilds it from them.
    """

    def __init__(self, path: Path, plan: list[ViewKey]):
        self.pool = background_processes(1)
        self.pending: list[Future] = [self.pool.submit(_start_assembly, path, plan)]
        self.finished = False
        self.busy = 0.0  # seconds its process spent adding parts, known once finished

    def add(self, part: Path) -> None:
        self.pending.append(self.pool.submit(_add_to_assembly, part))

    def finish(
        self, parts: list[Path], identity: dict, config: dict, sam_state: dict[str, np.ndarray]
    ) -> dict[str, float]:
        """Complete the cache (`assembly.Assembly.finish`) and put it in place; raises the
        first error the assembly met (a CacheError naming the fix). Returns the seconds each
        step took, the wait for the parts handed over before first."""
        start = time.perf_counter()
        self.busy = sum(future.result() or 0.0 for future in self.pending)
        waited = time.perf_counter() - start
        steps = self.pool.submit(_finish_assembly, parts, identity, config, sam_state).result()
        self.finished = True
        return {"adding the parts handed over": waited} | steps

    def __enter__(self) -> Assembler:
        return self

    def __exit__(self, *error) -> None:
        try:
            if not self.finished:
                # A broken pool (its process killed) cannot remove the .tmp: the next run
                # starts it again anyway.
                with suppress(RuntimeError):
                    wait([self.pool.submit(_abandon_assembly)])
        finally:
            self.pool.shutdown()


_assembly: assembly.Assembly | None = None  # the Assembler process's cache being assembled


def _start_assembly(path: Path, plan: list[ViewKey]) -> None:
    global _assembly
    _assembly = assembly.Assembly(path, plan)


def _add_to_assembly(part: Path) -> float:
    """Seconds it took."""
    start = time.perf_counter()
    assert _assembly is not None, "the assembly starts before its first part"
    _assembly.add(part)
    return time.perf_counter() - start


def _finish_assembly(
    parts: list[Path], identity: dict, config: dict, sam_state: dict[str, np.ndarray]
) -> dict[str, float]:
    assert _assembly is not None, "the assembly starts before it finishes"
    return _assembly.finish(parts, identity, config, sam_state)


def _abandon_assembly() -> None:
    if _assembly is not None:
        _assembly.abandon()
