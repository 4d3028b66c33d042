"""Rows of a cache read as a disk reads best: ascending, consecutive rows in one read of many
megabytes, so that `train`, `evaluate` and `report` read each embedding once at the disk's
sequential speed (HDF5 asked for scattered rows one by one reads far slower). `RowLoader`
does it in the background, so that work can start on the rows already read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import h5py
import numpy as np

READ_BYTES = 32 << 20  # bytes a read asks for: a few reads a second keep any disk streaming


def row_runs(rows: np.ndarray, per_read: int) -> list[tuple[int, int, int]]:
    """(first row, stop row, position in `rows`) of each read of ascending `rows`: runs of
    consecutive rows, cut every `per_read` rows."""
    rows = np.asarray(rows, np.int64)
    if len(rows) and np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be ascending and distinct")
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    reads = []
    for run in np.split(np.arange(len(rows)), breaks):
        for start in range(0, len(run), per_read):
            first = int(run[start])
            count = min(per_read, len(run) - start)
            reads.append((int(rows[first]), int(rows[first]) + count, first))
    return reads


def rows_per_read(dataset: h5py.Dataset) -> int:
    """How many rows of `dataset` make a read of about READ_BYTES."""
    row_bytes = max(1, dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64)))
    return max(1, READ_BYTES // row_bytes)


def read_rows(dataset: h5py.Dataset, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows `rows` (ascending) of a fixed-size dataset, into `out` (made when None)."""
    if out is None:
        out = np.empty((len(rows), *dataset.shape[1:]), dataset.dtype)
    for first, stop, position in row_runs(rows, rows_per_read(dataset)):
        dataset.read_direct(out, np.s_[first:stop], np.s_[position : position + stop - first])
    return out


@dataclass
class LoadStats:
    """What a load read: views, bytes and seconds, for the log."""

    views: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def mib_per_second(self) -> float:
        return self.bytes / 2**20 / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.views} views, {self.bytes / 2**20:.0f} MiB in {self.seconds:.1f} s "
            f"({self.mib_per_second:.0f} MiB/s)"
        )


class RowLoader:
    """Rows `rows` (ascending) of `dataset` read into one array by a thread of its own, in
    order, in reads of about READ_BYTES; `wait(count)` returns once the first `count` are in
    and checked.

    `check(values, start)` is called on each read's rows (`start`: the position in `rows` of
    the first) and raises for values not to be used. It runs in a second thread while the
    next read goes on, so that checking (hashing) costs no reading time where there is a
    core for it. An error while reading (an OSError for a damaged chunk, made
    `damaged(name, detail)`) or checking is raised again by `wait`. The reading thread holds
    the file only while it reads: the caller reads other datasets of the same file meanwhile.
    """

    def __init__(
        self,
        dataset: h5py.Dataset,
        rows: np.ndarray,
        check: Callable[[np.ndarray, int], None] | None = None,
        damaged: Callable[[str, str], Exception] | None = None,
    ):
        self.rows = np.asarray(rows, np.int64)
        self.array = np.empty((len(self.rows), *dataset.shape[1:]), dataset.dtype)
        self.stats = LoadStats()
        self._dataset, self._check, self._damaged = dataset, check, damaged
        self._loaded = 0
        self._error: BaseException | None = None
        self._done = threading.Condition()
        self._stop = False
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._load, name="row-loader", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        checking = ThreadPoolExecutor(1, thread_name_prefix="row-check")
        try:
            for first, stop, position in row_runs(self.rows, rows_per_read(self._dataset)):
                if self._stop or self._error is not None:
                    return
                target = np.s_[position : position + stop - first]
                self._read(first, stop, target)
                checking.submit(self._checked, target).add_done_callback(self._fail_on_error)
        except BaseException as error:  # raised again in the thread that waits
            self._fail(error)
        finally:
            checking.shutdown(wait=True)

    def _read(self, first: int, stop: int, target) -> None:
        try:
            self._dataset.read_direct(self.array, np.s_[first:stop], target)
        except OSError as error:  # fletcher32 mismatch or a broken HDF5 structure
            if self._damaged is None:
                raise
            raise self._damaged(self._dataset.name.lstrip("/"), str(error)) from error

    def _checked(self, target: slice) -> None:
        """Check one read's rows (in the checking thread, in read order), then hand them out."""
        if self._error is not None or self._stop:
            return
        if self._check is not None:
            self._check(self.array[target], target.start)
        row_bytes = self.array[:1].nbytes
        with self._done:
            self._loaded = target.stop
            seconds = time.perf_counter() - self._start
            self.stats = LoadStats(self._loaded, self._loaded * row_bytes, seconds)
            self._done.notify_all()

    def _fail_on_error(self, future) -> None:
        if future.exception() is not None:
            self._fail(future.exception())

    def _fail(self, error: BaseException) -> None:
        with self._done:
            if self._error is None:
                self._error = error
            self._done.notify_all()

    def wait(self, count: int) -> None:
        """Block until the first `count` rows are read and checked; raise the loader's error
        where it came first."""
        with self._done:
            self._done.wait_for(lambda: self._loaded >= count or self._error is not None)
            if self._loaded < count and self._error is not None:
                # rows checked before an error are still good
                raise self._error

    @property
    def finished(self) -> bool:
        return self._loaded == len(self.rows)

    def result(self) -> np.ndarray:
        """The whole array, once every row is read."""
        self.wait(len(self.rows))
        return self.array

    def close(self) -> None:
        """Stop reading (after the read in progress) and wait for the threads."""
        self._stop = True
        self._thread.join()
