"""Rows read as a disk reads best: runs of consecutive rows, in large reads, in the
background; the same values as reading them one by one, and damage still named."""

from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest

from floodcache.cache import loading
from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache


def test_runs_of_consecutive_rows_are_cut_at_the_read_size():
    assert loading.row_runs(np.array([0, 1, 2, 5, 6, 9]), 2) == [
        (0, 2, 0),
        (2, 3, 2),
        (5, 7, 3),
        (9, 10, 5),
    ]
    with pytest.raises(ValueError, match="ascending"):
        loading.row_runs(np.array([3, 1]), 2)


def test_read_rows_and_the_loader_give_what_indexing_gives(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "READ_BYTES", 3 * 16)  # three rows a read
    values = np.arange(20 * 4, dtype=np.float32).reshape(20, 4)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("x", data=values, chunks=(1, 4), fletcher32=True)
    rows = np.array([0, 1, 2, 3, 7, 8, 15, 19])
    with h5py.File(tmp_path / "f.h5", "r") as f:
        assert np.array_equal(loading.read_rows(f["x"], rows), values[rows])
        loader = loading.RowLoader(f["x"], rows)
        loader.wait(3)
        assert loader.stats.views >= 3
        assert np.array_equal(loader.result(), values[rows])
        assert loader.finished and loader.stats.bytes == 8 * 16 and loader.stats.seconds > 0
        assert "8 views" in loader.stats.line()


def test_each_read_is_checked_beside_the_reading_and_an_error_stops_the_load(tmp_path, monkeypatch):
    """The check gets each read's rows and their position, in a thread of its own (reading
    goes on meanwhile); rows are handed out only once checked, and a check's error is raised
    to whoever waits past it."""
    monkeypatch.setattr(loading, "READ_BYTES", 3 * 16)  # three rows a read
    values = np.arange(20 * 4, dtype=np.float32).reshape(20, 4)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("x", data=values, chunks=(1, 4))
    checked = []

    def check(rows: np.ndarray, start: int) -> None:
        checked.append((start, len(rows), threading.current_thread().name))
        if start == 6:
            raise ValueError("row 6 is damaged")

    with h5py.File(tmp_path / "f.h5", "r") as f:
        loader = loading.RowLoader(f["x"], np.arange(12), check)
        loader.wait(6)
        assert np.array_equal(loader.array[:6], values[:6])
        with pytest.raises(ValueError, match="row 6 is damaged"):
            loader.wait(7)
        loader.close()
    assert [(start, count) for start, count, _ in checked] == [(0, 3), (3, 3), (6, 3)]
    assert all(name.startswith("row-check") for _, _, name in checked)


def test_a_damaged_row_read_in_the_background_is_named(tiny_cache, tmp_path):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(tiny_cache.read_bytes())
    with h5py.File(damaged, "r") as f:
        offset = f["embeddings"].id.get_chunk_info(2).byte_offset
    with open(damaged, "r+b") as stream:  # a flipped byte inside view 2's chunk
        stream.seek(offset + 100)
        byte = stream.read(1)
        stream.seek(offset + 100)
        stream.write(bytes([byte[0] ^ 0xFF]))
    with Cache.open(damaged) as cache:
        loader = cache.load_embeddings(cache.rows())
        with pytest.raises(CacheError, match=r"damaged \(embeddings: .*verify"):
            loader.result()
        assert np.array_equal(cache.read("view", [3, 0]), cache.column("view")[[3, 0]])
