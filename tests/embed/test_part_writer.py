"""embed's writing side in background processes (floodcache/part_writer.py).

Failures, Ctrl-C and kills during whole embed runs are in tests/test_faults.py.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import h5py
import numpy as np
import pytest

from floodcache.cache.assembly import assemble
from floodcache.cache.verify import verify
from floodcache.cache.writer import CacheWriter
from floodcache.embed import shared_memory
from floodcache.embed.part_writer import Assembler, PartWriter, part_name
from tests.helpers import IDENTITY, SAM_STATE, assert_cache_holds, make_plan, make_records


@pytest.mark.parametrize("room", [1 << 40, 0], ids=["shared-memory", "pipes"])
def test_parts_are_written_in_order_whatever_the_batch_sizes(tmp_path, monkeypatch, room):
    """Batches of 3, 1 and 4 views (memory reused, then grown) reach their parts whole, and
    `written` hears of them in the order they were handed over; with no room in /dev/shm
    the embeddings go through pipes."""
    monkeypatch.setattr(shared_memory, "room", lambda: room)
    plan = make_plan(8)
    records = make_records(plan)
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    heard = []
    with PartWriter(writer, lambda views, finished: heard.append(views), depth=2) as parts:
        for name, rows in (("a", range(0, 3)), ("b", range(3, 4)), ("c", range(4, 8))):
            parts.submit([dict(records[row]) for row in rows], name)
    assert heard == [3, 1, 4]
    assert parts.shared is (room > 0)
    assert all(block.is_shared() is (room > 0) for block in parts.blocks)
    assert not multiprocessing.active_children()
    for part, rows in zip(writer.part_files(), ([0, 1, 2], [3], [4, 5, 6, 7]), strict=True):
        with h5py.File(part, "r") as f:
            for i, row in enumerate(rows):
                np.testing.assert_array_equal(f["embeddings"][i], records[row]["embeddings"])
                assert f["image_id"].asstr()[i] == records[row]["image_id"]
    assemble(writer, plan, SAM_STATE)
    writer.close()
    assert_cache_holds(tmp_path / "c.h5", plan, records)


@pytest.mark.parametrize("room", [1 << 40, 0], ids=["shared-memory", "pipes"])
def test_the_last_batch_is_written_by_every_writer_at_once(tmp_path, monkeypatch, room):
    """The run's last batch becomes one part per writer process, named after its first view;
    `written` hears of the batch once, whole, and the cache is the same."""
    monkeypatch.setattr(shared_memory, "room", lambda: room)
    plan = make_plan(9)
    records = make_records(plan, seed=4)
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    heard = []
    with PartWriter(writer, lambda views, finished: heard.append(views), processes=3) as parts:
        parts.submit([dict(r) for r in records[:2]], "first")
        parts.submit([dict(r) for r in records[2:]], last=True)
    assert heard == [2, 7]
    names = [part.name for part in writer.part_files()]
    pieces = ([2, 3], [4, 5], [6, 7, 8])  # 7 views cut among 3 writers
    expected = ["part-first.h5"] + [f"part-{part_name(records[rows[0]])}.h5" for rows in pieces]
    assert sorted(names) == sorted(expected)
    for rows in pieces:
        with h5py.File(writer.parts / f"part-{part_name(records[rows[0]])}.h5", "r") as f:
            assert f["view"][:].tolist() == [records[row]["view"] for row in rows]
            for i, row in enumerate(rows):
                np.testing.assert_array_equal(f["embeddings"][i], records[row]["embeddings"])
    assemble(writer, plan, SAM_STATE)
    writer.close()
    assert_cache_holds(tmp_path / "c.h5", plan, records)


@pytest.mark.parametrize("room", [1 << 40, 0], ids=["shared-memory", "pipes"])
def test_embeddings_put_in_lent_memory_are_written_without_another_copy(
    tmp_path, monkeypatch, room
):
    """Embeddings written into `memory()` (as the GPU's copies are) go to the writers from
    there: no other block is taken for them; embeddings elsewhere are copied as before."""
    monkeypatch.setattr(shared_memory, "room", lambda: room)
    plan = make_plan(7)
    records = make_records(plan, seed=3)
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    taken = []
    with PartWriter(writer, lambda *_: None, depth=2) as parts:
        block = parts._block
        monkeypatch.setattr(parts, "_block", lambda views: taken.append(views) or block(views))
        for name, rows in (("a", range(0, 3)), ("b", range(3, 5)), ("c", range(5, 7))):
            batch = [dict(records[row]) for row in rows]
            if name != "b":  # b's embeddings stay where they are: copied
                lent = parts.memory(len(batch))
                lent[...] = np.stack([view["embeddings"] for view in batch])
                for view, row in zip(batch, lent, strict=True):
                    view["embeddings"] = row
            parts.submit(batch, name)
    assert taken == [3, 2, 2]  # a's and c's by memory(), b's by submit
    assemble(writer, plan, SAM_STATE)
    writer.close()
    assert_cache_holds(tmp_path / "c.h5", plan, records)


def test_the_assembler_builds_the_cache_as_parts_come(tmp_path):
    """Parts added one by one as written, the last at the end, give the cache in place."""
    plan = make_plan(6)
    records = make_records(plan, seed=2)
    path = tmp_path / "c.h5"
    writer = CacheWriter(path, IDENTITY, {"identity": IDENTITY})
    with Assembler(path, plan) as assembler:
        with PartWriter(writer, lambda *_: None, assembler) as parts:
            parts.submit([dict(r) for r in records[3:]], "late")
            parts.submit([dict(r) for r in records[:2]], "early")
        writer.write_part([dict(records[2])], "other-rank")  # never handed to the assembler
        assert path.with_name("c.h5.tmp").exists() and not path.exists()
        steps = assembler.finish(writer.part_files(), IDENTITY, {"identity": IDENTITY}, SAM_STATE)
    writer.close()
    # measured (positive, finite) for embed's log; how long is the machine's, not a test's matter
    assert 0 < assembler.busy < float("inf")  # the two parts handed over
    assert all(0 <= seconds < float("inf") for seconds in steps.values())
    assert not path.with_name("c.h5.tmp").exists() and not writer.parts.exists()
    assert verify(path).ok
    assert_cache_holds(path, plan, records)


def test_an_unfinished_assembly_leaves_only_the_parts(tmp_path):
    plan = make_plan(2)
    path = tmp_path / "c.h5"
    writer = CacheWriter(path, IDENTITY, {"identity": IDENTITY})
    writer.write_part(make_records(plan), "0")
    with Assembler(path, plan) as assembler:
        assembler.add(writer.part_files()[0])
    writer.close()
    assert not path.with_name("c.h5.tmp").exists() and not path.exists()
    assert len(writer.part_files()) == 1


def test_an_assembler_whose_process_died_lets_the_first_error_through(tmp_path):
    plan = make_plan(2)
    path = tmp_path / "c.h5"
    writer = CacheWriter(path, IDENTITY, {"identity": IDENTITY})
    with pytest.raises(KeyboardInterrupt), Assembler(path, plan) as assembler:
        for pid in list(assembler.pool._processes):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not assembler.pool._broken:  # the pool notices on its own thread
            assert time.monotonic() < deadline
            time.sleep(0.05)
        raise KeyboardInterrupt  # the run's own error: it must not be replaced on the way out
    writer.close()
