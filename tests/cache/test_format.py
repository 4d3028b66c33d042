"""The cache's checksums stay what they were for existing caches."""

from __future__ import annotations

import hashlib

import numpy as np

from floodcache.cache.format import view_digest
from floodcache.cache.reader import Cache


def digest_as_written_before(record: dict) -> str:
    """view_digest as caches written so far computed it, with copies through .tobytes()."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(record["embeddings"], np.float16).tobytes())
    digest.update(np.ascontiguousarray(record["lowres_mask"], np.uint8).tobytes())
    digest.update(np.asarray(record["mask_png"], np.uint8).tobytes())
    return digest.hexdigest()


def test_view_digest_is_unchanged_for_existing_caches(tiny_cache):
    rng = np.random.default_rng(3)
    embedding = rng.standard_normal((64, 256, 64)).astype(np.float32)
    records = [
        {
            "embeddings": rng.standard_normal((256, 64, 64)).astype(np.float16),
            "lowres_mask": rng.integers(0, 2, (256, 256), np.uint8),
            "mask_png": rng.integers(0, 256, 777, np.uint8),
        },
        {  # float32, big-endian, transposed, strided: converted or copied as before
            "embeddings": embedding.transpose(1, 0, 2),
            "lowres_mask": rng.integers(0, 2, (256, 512), np.uint8)[:, ::2],
            "mask_png": rng.integers(0, 256, 300).astype(">i4")[::3],
        },
    ]
    for record in records:
        assert view_digest(record) == digest_as_written_before(record)
    with Cache.open(tiny_cache) as cache:
        stored = cache.column("view_sha256")
        for row in range(3):
            record = {n: cache.file[n][row] for n in ("embeddings", "lowres_mask", "mask_png")}
            assert view_digest(record) == digest_as_written_before(record) == stored[row]
