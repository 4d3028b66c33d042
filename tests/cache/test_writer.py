"""Cache parts: one layout for parts and cache."""

from __future__ import annotations

import h5py
import pytest

from floodcache.cache import assembly
from floodcache.cache import writer as cache_writer
from floodcache.cache.format import FIELDS
from floodcache.cache.writer import CacheWriter
from tests.helpers import IDENTITY, make_plan, make_records


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
