"""Cache parts written on a background thread while the encoder goes on (`embed`'s writer)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from floodcache.cache import CacheWriter

PARTS_IN_FLIGHT = 2  # batches handed to the writer thread, not yet written: bounds memory


class PartWriter:
    """Writes batches as cache parts on one background thread, while the next ones encode.

    Digest, HDF5 write and fsync (~3 ms a view on a fast disk, mostly without the GIL) would
    otherwise hold up the GPU. At most `depth` parts wait, each holding a batch's embeddings
    (64 MiB at 32 views). A failed write raises its CacheError in the caller's thread at the
    next `submit` or at the end of the `with` block. Leaving the block for any reason, Ctrl-C
    included, first waits until every part handed over is written or has failed (write_part
    renames a part into place only when whole): finished work is kept, nothing half written.
    `written(views, finished)` is called in the caller's thread for each part written, in
    order, with the time.perf_counter() at which its write finished. `busy` and `waited` add
    up the seconds the thread spent writing and the caller spent waiting for it.
    """

    def __init__(
        self,
        writer: CacheWriter,
        written: Callable[[int, float], None],
        depth: int = PARTS_IN_FLIGHT,
    ):
        self.writer, self.written, self.depth = writer, written, depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="floodcache-writer")
        self.pending: deque[tuple[Future, int]] = deque()
        self.busy = self.waited = 0.0

    def submit(self, records: list[dict], name: str) -> None:
        """Hand over a batch of finished views (dicts of every cache field) as part `name`."""
        while self.pending and (len(self.pending) >= self.depth or self.pending[0][0].done()):
            self._collect_oldest()
        self.pending.append((self.pool.submit(self._write, records, name), len(records)))

    def _write(self, records: list[dict], name: str) -> float:
        start = time.perf_counter()
        self.writer.write_part(records, name)
        finished = time.perf_counter()
        self.busy += finished - start
        return finished

    def _collect_oldest(self) -> None:
        future, views = self.pending.popleft()
        start = time.perf_counter()
        finished = future.result()  # a failed write raises here
        self.waited += time.perf_counter() - start
        self.written(views, finished)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            while self.pending and error is None:
                self._collect_oldest()
        finally:
            wait([future for future, _ in self.pending])  # only after an error: they may fail
            self.pool.shutdown()
