"""The cache assembled from its parts: in plan order, chunks copied as stored, a failed
flush keeping the parts."""

from __future__ import annotations

import errno

import h5py
import pytest

from floodcache.cache import assembly
from floodcache.cache import writer as cache_writer
from floodcache.cache.assembly import assemble
from floodcache.cache.format import CacheError
from floodcache.cache.writer import CacheWriter
from floodcache.data.views import ViewKey
from tests.helpers import IDENTITY, SAM_STATE, assert_cache_holds, make_plan, make_records


def test_parts_in_any_order_assemble_into_plan_order(tmp_path):
    plan = make_plan(7)
    records = make_records(plan)
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    # Parts in another order than the plan, one of them with rows that are not consecutive.
    for name, rows in (("b", [3, 4]), ("a", [0, 2, 6]), ("c", [1, 5])):
        writer.write_part([dict(records[row]) for row in rows], name)
    assemble(writer, plan, SAM_STATE)
    writer.close()
    assert_cache_holds(tmp_path / "c.h5", plan, records)


def test_a_failed_flush_to_disk_while_assembling_keeps_the_parts(tmp_path, monkeypatch):
    """The .tmp is flushed to disk on a thread while the next part is copied: its error
    (here a full disk) still stops the assembly with what to do, and loses no part."""
    plan = make_plan(4)
    records = make_records(plan)
    path = tmp_path / "c.h5"
    writer = CacheWriter(path, IDENTITY, {"identity": IDENTITY})
    parts = [writer.write_part([dict(r) for r in records[i : i + 2]], str(i)) for i in (0, 2)]
    synced = []

    def full_disk(fd: int) -> None:
        synced.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(assembly, "_DATASYNC", full_disk)
    assembling = assembly.Assembly(path, plan)
    assembling.add(parts[0])  # its flush fails on the flushing thread ...
    with pytest.raises(CacheError, match="free some space and rerun"):
        assembling.add(parts[1])  # ... and is raised when the next part waits for it
    with pytest.raises(CacheError, match="No space left"):
        assembling.finish(parts, IDENTITY, {"identity": IDENTITY}, SAM_STATE)
    assert len(synced) == 1
    assert not assembling.tmp.exists() and not path.exists()
    assert sorted(writer.part_files()) == sorted(parts)
    writer.close()


def _chunk(dataset: h5py.Dataset, row: int) -> tuple[int, bytes]:
    """(filter mask, bytes) of a one-row-per-chunk dataset's row, as stored in the file."""
    return dataset.id.read_direct_chunk((row,) + (0,) * (dataset.ndim - 1))


def test_assembly_copies_the_stored_chunks_of_embeddings_and_targets(tmp_path):
    """The chunked fields reach the cache as their parts stored them, checksums included."""
    plan = make_plan(4)
    records = make_records(plan)
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    writer.write_part([dict(r) for r in records[2:]], "1")
    writer.write_part([dict(r) for r in records[:2]], "0")
    stored = {}
    for part in writer.part_files():
        with h5py.File(part, "r") as f:
            ids = f["image_id"].asstr()[:].tolist()
            for i, view in enumerate(f["view"][:].tolist()):
                row = plan.index(ViewKey(ids[i], view, "train"))
                stored |= {(name, row): _chunk(f[name], i) for name in cache_writer.CHUNKED}
    assemble(writer, plan, SAM_STATE)
    writer.close()
    with h5py.File(tmp_path / "c.h5", "r") as built:
        for (name, row), chunk in stored.items():
            assert _chunk(built[name], row) == chunk, (name, row)
    assert_cache_holds(tmp_path / "c.h5", plan, records)


def test_parts_of_an_older_layout_still_assemble(tmp_path):
    """Parts left by an older floodcache (contiguous datasets) are decoded and written again,
    so a run it started can be finished by this one."""
    plan = make_plan(5)
    records = make_records(plan, seed=1)
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    writer.write_part([dict(records[row]) for row in (0, 2, 4)], "a")
    writer.write_part([dict(records[row]) for row in (1, 3)], "b")
    for part in writer.part_files():
        _rewrite_contiguous(part)
    assemble(writer, plan, SAM_STATE)
    writer.close()
    assert_cache_holds(tmp_path / "c.h5", plan, records)


def _rewrite_contiguous(part) -> None:
    """Store every dataset of a part file unchunked and unfiltered, as older parts were."""
    with h5py.File(part, "r") as f:
        data = {name: (f[name][:], f[name].dtype) for name in f}
    with h5py.File(part, "w") as f:
        for name, (values, dtype) in data.items():
            f.create_dataset(name, data=values, dtype=dtype)
            assert f[name].chunks is None
