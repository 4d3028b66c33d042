"""Cache parts: one layout for parts and cache."""

from __future__ import annotations

import h5py
import pytest

from floodcache.cache import assembly
from floodcache.cache import writer as cache_writer
from floodcache.cache.format import FIELDS, CacheError
from floodcache.cache.writer import CacheWriter
from tests.helpers import (
    IDENTITY,
    held_by_another_process,
    make_plan,
    make_records,
    write_cache,
)


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


@pytest.mark.parametrize("overwrite", [False, True])
def test_removing_a_live_embeds_lock_file_lets_no_second_one_write(tmp_path, overwrite):
    """The file `<cache>.lock` removed by hand while an embed runs (taken for one a kill -9
    left): a second embed is still refused, names the live process, and leaves its parts."""
    cache = tmp_path / "c.h5"

    def first():
        writer = CacheWriter(cache, IDENTITY, {"identity": IDENTITY})
        writer.write_part(make_records(make_plan(2)), "0")
        return writer

    with held_by_another_process(first) as holder:
        (tmp_path / "c.h5.lock").unlink()
        other = IDENTITY | {"seed": 1}
        with pytest.raises(CacheError, match=rf"process {holder} is running"):
            CacheWriter(cache, other, {"identity": other}, overwrite=overwrite)
        assert len(cache_writer.part_files(tmp_path / "c.h5.parts")) == 1


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("kind", ["a photo", "another HDF5 file"])
def test_a_file_that_is_not_a_cache_is_never_replaced(tmp_path, overwrite, kind):
    """`--cache photo.jpg --overwrite` deleted the photo, as the earlier message advised."""
    mine = tmp_path / "mine"
    if kind == "a photo":
        mine.write_bytes(b"\xff\xd8\xff a photo")
    else:
        with h5py.File(mine, "w") as f:
            f["measurements"] = [1.0, 2.0]
    content = mine.read_bytes()
    with pytest.raises(CacheError, match="mine is (not an|an HDF5 file but not a) .*another name"):
        CacheWriter(mine, IDENTITY, {"identity": IDENTITY}, overwrite=overwrite)
    assert mine.read_bytes() == content
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mine"]


def test_a_cache_whose_config_is_not_json_is_named_damaged(tmp_path):
    write_cache(tmp_path / "c.h5", make_plan(2))
    with h5py.File(tmp_path / "c.h5", "r+") as f:
        f.attrs["config"] = "{garbage"
    with pytest.raises(CacheError, match=r"c.h5 is damaged \(config: .*--overwrite"):
        CacheWriter(tmp_path / "c.h5", IDENTITY, {"identity": IDENTITY})
