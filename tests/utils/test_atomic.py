"""Results written whole or not at all."""

from __future__ import annotations

import errno

import pytest

from floodcache.utils.atomic import write_whole


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
