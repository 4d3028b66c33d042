"""Results written whole or not at all."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from floodcache.utils.atomic import write_folder_whole, write_whole


def test_a_result_is_written_whole(tmp_path):
    target = tmp_path / "new" / "result.txt"
    write_whole(target, lambda tmp: tmp.write_text("finished"))
    assert target.read_text() == "finished"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.txt"]


def _half_written(error: BaseException):
    def write(tmp):
        tmp.write_text("half")
        raise error

    return write


def test_a_failed_write_keeps_the_earlier_file_and_names_it(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("earlier")
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(ValueError, match=r"could not write .*result.txt .*No space left.*--out"):
        write_whole(target, _half_written(full))
    with pytest.raises(KeyboardInterrupt):  # stopped while writing: raised as it is
        write_whole(target, _half_written(KeyboardInterrupt()))
    assert target.read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.txt"]  # no temporary file


def _record_syncs_and_renames(monkeypatch) -> list[tuple]:
    """("fsync", path) and ("replace", source, target) as they happen."""
    events: list[tuple] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(descriptor):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def recorded_replace(source, target):
        events.append(("replace", str(source), str(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    return events


def test_a_result_is_on_disk_before_its_name_points_at_it(tmp_path, monkeypatch):
    """A power cut after the rename must not leave an empty file under the result's name."""
    events = _record_syncs_and_renames(monkeypatch)
    target = tmp_path / "result.txt"
    write_whole(target, lambda tmp: tmp.write_text("finished"))
    tmp = events[0][1]
    assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".result.txt.")
    assert events == [("fsync", tmp), ("replace", tmp, str(target)), ("fsync", str(tmp_path))]


def test_a_result_folder_is_on_disk_before_it_is_put_in_place(tmp_path, monkeypatch):
    events = _record_syncs_and_renames(monkeypatch)
    run = tmp_path / "run"
    write_folder_whole(run, lambda folder: (folder / "decoder.pt").write_bytes(b"weights"))
    replaced = next(i for i, event in enumerate(events) if event[0] == "replace")
    source = events[replaced][1]
    synced_before = {path for _, path in events[:replaced]}
    assert {f"{source}/decoder.pt", source} <= synced_before
    assert events[replaced:] == [("replace", source, str(run)), ("fsync", str(tmp_path))]


def test_two_writers_of_one_result_never_share_a_temporary_file(tmp_path):
    """A second writer finishing while the first is still writing: both succeed, the result
    is whole, and no temporary file is left (one fixed temporary name made the first fail)."""
    target = tmp_path / "predict.json"
    writing, finished = threading.Event(), threading.Event()
    errors = []

    def slow(tmp):
        tmp.write_text("first")
        writing.set()
        finished.wait(10)

    def first():
        try:
            write_whole(target, slow)
        except Exception as error:  # noqa: BLE001 -- reported by the assertion below
            errors.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    writing.wait(10)
    write_whole(target, lambda tmp: tmp.write_text("second"))
    finished.set()
    thread.join()
    assert errors == [] and target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predict.json"]
