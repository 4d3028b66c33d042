"""Results are written whole or not at all, and a failed write says which file and what to do."""

from __future__ import annotations

import errno
import os

import pytest

from floodcache.atomic_write import write_whole
from floodcache.evaluate import EvaluateConfig, load_evaluation, run_evaluate


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


def test_evaluate_on_a_full_disk_says_so_and_leaves_no_stale_metadata(
    train_cache, tmp_path, monkeypatch
):
    out = tmp_path / "eval"
    config = EvaluateConfig(train_cache, out, prompts="none", split="val", progress=False)
    run_evaluate(config)
    replace = os.replace

    def disk_full_at_the_csv(source, target):
        if str(target).endswith(".csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full_at_the_csv)
    config.prompts, config.overwrite = "box", True  # another evaluation, replacing it
    with pytest.raises(ValueError, match=r"could not write .*metrics.csv .*No space left"):
        run_evaluate(config)
    # The old metadata went first: no evaluation.json describes a table it did not write.
    assert not (out / "evaluation.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(os, "replace", replace)
    run_evaluate(config)
    table, metadata = load_evaluation(out)
    assert table["prompt"].unique().to_list() == ["box"] and metadata["identity"]["prompts"] == [
        "box"
    ]
