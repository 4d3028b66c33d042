"""Damaged caches: named by verify, refused by train."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.cache.verify import verify
from floodcache.train.config import TrainConfig
from floodcache.train.run import run_train
from tests.helpers import (
    PROJECT,
    embed_command,
    kill_after_parts,
)


@pytest.fixture
def cache_copy(tiny_cache, tmp_path) -> Path:
    copy = tmp_path / "copy.h5"
    shutil.copy(tiny_cache, copy)
    return copy


def test_truncated_cache_is_refused(cache_copy, tmp_path):
    with open(cache_copy, "r+b") as f:
        f.truncate(cache_copy.stat().st_size // 2)
    with pytest.raises(CacheError, match="damaged or truncated"):
        verify(cache_copy)
    with pytest.raises(CacheError, match="damaged or truncated"):
        run_train(TrainConfig(cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False))
    cli = subprocess.run(
        [sys.executable, str(PROJECT / "cli.py"), "verify", "--cache", str(cache_copy)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "damaged or truncated" in cli.stderr


def flip_embedding_bytes(path: Path, row: int) -> None:
    with h5py.File(path, "r") as f:
        offset = f["embeddings"].id.get_chunk_info(row).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + 1000)
        byte = f.read(1)
        f.seek(offset + 1000)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_flipped_bytes_are_named_and_never_trained_on(cache_copy, tmp_path):
    with Cache.open(cache_copy) as opened:
        row = int(opened.rows("train")[2])
        image_id, view = opened.column("image_id")[row], opened.column("view")[row]
    flip_embedding_bytes(cache_copy, row)
    report = verify(cache_copy)
    assert not report.ok
    assert any(
        f"image {image_id}, view {view}" in p or f"view {row}:" in p for p in report.problems
    ), report.problems
    with pytest.raises(CacheError, match="is damaged"):
        run_train(TrainConfig(cache=cache_copy, out=tmp_path / "run", epochs=1, progress=False))
    assert not (tmp_path / "run").exists()


def test_incomplete_cache_is_refused_by_train(tiny_data, tiny_checkpoint, tmp_path):
    cache = tmp_path / "half.h5"
    kill_after_parts(
        embed_command(tiny_data, tiny_checkpoint, cache), cache.with_name("half.h5.parts"), 2
    )
    with pytest.raises(CacheError, match="Run the same command again"):
        run_train(TrainConfig(cache=cache, out=tmp_path / "run", epochs=1, progress=False))
