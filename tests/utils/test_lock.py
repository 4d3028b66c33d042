"""One writer at a time: a lock held by a live process, never the mere existence of a file."""

from __future__ import annotations

import os

import pytest

from floodcache.utils.lock import ProcessLock
from tests.helpers import held_by_another_process


def take(path):
    return ProcessLock(path, f"another run is writing {path.stem}", "or choose another --out")


def test_a_lock_held_by_a_live_process_names_it(tmp_path):
    path = tmp_path / "out.lock"
    with held_by_another_process(lambda: take(path)) as holder:
        with pytest.raises(ValueError, match=rf"process {holder} is running and holds") as held:
            take(path)
        assert "another --out" in str(held.value) and "would not stop it" in str(held.value)
    with take(path):  # released when the other process let it go
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_a_lock_file_left_by_a_process_that_ended_blocks_nobody(tmp_path):
    """kill -9 leaves the file; the kernel's lock went with the process."""
    path = tmp_path / "out.lock"
    path.write_text("4194303\n")
    with take(path):
        assert path.read_text() == f"{os.getpid()}\n"


def test_a_lock_excludes_within_one_process_too(tmp_path):
    path = tmp_path / "out.lock"
    with take(path), pytest.raises(ValueError, match=f"process {os.getpid()}"):
        take(path)
