"""A run folder's record and history, read without torch, damage named with the fix."""

from __future__ import annotations

import shutil

import pytest

from floodcache.train.runs import read_history


@pytest.mark.parametrize(
    "content", [b"not,a\nhistory,file\n", b"\x00\xff\xfe garbled", b"epoch,seconds\n"]
)
def test_a_garbled_history_is_named_with_the_fix(finetuned_run, tmp_path, content):
    """A garbled history.csv gave the report a polars traceback, or a KeyError."""
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    assert read_history(run).height == 1
    (run / "history.csv").write_bytes(content)
    with pytest.raises(ValueError, match=f"{run / 'history.csv'} is damaged .*--overwrite"):
        read_history(run)
