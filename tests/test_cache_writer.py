"""The cache's parts and their assembly into one file (floodcache/cache_writer.py,
floodcache/assembly.py).

Whole embed runs, crashes and resumes are in tests/test_embed.py and tests/test_faults.py.
"""

from __future__ import annotations

import errno

import h5py
import numpy as np
import pytest

from floodcache import assembly, cache, cache_writer
from floodcache.assembly import assemble
from floodcache.cache import FIELDS, Cache, verify
from floodcache.cache_writer import CacheWriter
from floodcache.views import ViewKey

IDENTITY = {"model_type": "vit_tiny", "checkpoint_sha256": "0" * 64}
SAM_STATE = {"mask_decoder/w": np.arange(4, dtype=np.float32), "prompt_encoder/w": np.ones(2)}


def make_records(plan: list[ViewKey], seed: int = 0) -> list[dict]:
    """A record (every cache field) per planned view, different in every field."""
    rng = np.random.default_rng(seed)
    records = []
    for row, key in enumerate(plan):
        records.append(
            {
                "embeddings": rng.standard_normal(cache.EMBEDDING_SHAPE).astype(np.float16),
                "lowres_mask": (rng.random((256, 256)) > 0.5).astype(np.uint8),
                "mask_png": rng.integers(0, 255, 50 + row, dtype=np.uint8),
                "image_jpeg": rng.integers(0, 255, 80 + 3 * row, dtype=np.uint8),
                "image_id": key.image_id,
                "split": key.split,
                "image_file": f"Image/{key.image_id}.jpg",
                "mask_file": f"Mask/{key.image_id}.png",
                "view": key.view,
                "original_size": np.array([400 + row, 600], np.int32),
                "input_size": np.array([683, 1024], np.int32),
                "water_fraction": np.float32(row / 10),
            }
        )
    return records


def make_plan(views: int) -> list[ViewKey]:
    return [ViewKey(f"img{i // 2}", i % 2, "train") for i in range(views)]


def assert_cache_holds(path, plan: list[ViewKey], records: list[dict]) -> None:
    """The cache at `path` has each record in its planned row, field for field, and verifies."""
    assert verify(path).ok
    with Cache.open(path) as built:
        assert built.column("image_id").tolist() == [key.image_id for key in plan]
        for row, record in enumerate(records):
            record = record | {"view_sha256": cache.view_digest(record)}
            for name, (_, dtype) in FIELDS.items():
                stored = built.file[name][row]
                if dtype is cache.STR:
                    assert stored.decode() == record[name], (name, row)
                else:
                    np.testing.assert_array_equal(stored, record[name], err_msg=f"{name} {row}")


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
    with pytest.raises(cache.CacheError, match="free some space and rerun"):
        assembling.add(parts[1])  # ... and is raised when the next part waits for it
    with pytest.raises(cache.CacheError, match="No space left"):
        assembling.finish(parts, IDENTITY, {"identity": IDENTITY}, SAM_STATE)
    assert len(synced) == 1
    assert not assembling.tmp.exists() and not path.exists()
    assert sorted(writer.part_files()) == sorted(parts)
    writer.close()


def test_parts_are_set_aside_at_once_and_removed_in_the_background(tmp_path):
    plan = make_plan(4)
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    writer.write_part(make_records(plan), "0")
    assemble(writer, plan, SAM_STATE)
    writer.close()
    assert not writer.parts.exists()  # out of the way as soon as the cache is in place
    cache_writer.wait_for_removals(tmp_path / "c.h5", timeout=30)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.h5"]


def test_parts_left_set_aside_are_removed_by_the_next_run(tmp_path):
    """A machine stopped while the parts were removed: the next writer removes them."""
    left = cache_writer.parts_folder(tmp_path / "c.h5").with_name("c.h5.parts.removing-1-2")
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "part-0.h5").write_bytes(b"\0" * 1000)
    assert cache_writer.removals_pending(tmp_path / "c.h5") == [left]
    CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY}).close()
    cache_writer.wait_for_removals(tmp_path / "c.h5", timeout=30)
    assert not left.exists()


def test_parts_left_beside_a_complete_cache_are_removed(tmp_path):
    """Stopped after the cache was in place, before its parts were set aside."""
    plan = make_plan(2)
    with CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY}) as writer:
        writer.write_part(make_records(plan), "0")
        parts = sorted(writer.parts.iterdir())
        kept = {path.name: path.read_bytes() for path in parts}
        assemble(writer, plan, SAM_STATE)
    writer.parts.mkdir()
    for name, content in kept.items():
        (writer.parts / name).write_bytes(content)
    with CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY}) as again:
        assert again.already_complete and not again.parts.exists()
    cache_writer.wait_for_removals(tmp_path / "c.h5", timeout=30)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.h5"]


def test_without_rm_the_parts_are_removed_in_this_process(tmp_path, monkeypatch):
    def no_rm(*args, **kwargs):
        raise FileNotFoundError("rm")

    monkeypatch.setattr(cache_writer.subprocess, "Popen", no_rm)
    parts = tmp_path / "c.h5.parts"
    parts.mkdir()
    (parts / "part-0.h5").write_bytes(b"\0" * 1000)
    cache_writer.set_aside_and_remove(parts)
    assert list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize("name", cache_writer.CHUNKED)
def test_parts_and_cache_store_chunked_fields_alike(tmp_path, name):
    """One row per chunk with a checksum, in both: what lets assembly copy chunks as stored."""
    writer = CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
    writer.write_part(make_records(make_plan(2)), "0")
    with h5py.File(writer.part_files()[0], "r") as part, h5py.File(tmp_path / "x.h5", "w") as f:
        cache_writer.create_fields(f, 2)
        assert part[name].chunks == (1, *FIELDS[name][0])
        assert part[name].fletcher32
        assert assembly._same_storage(part[name], f[name])
    writer.close()
