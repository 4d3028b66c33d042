"""The evaluation folder, written whole: a full disk leaves no stale metadata."""

from __future__ import annotations

import errno
import os

import pytest

from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.evaluate import run_evaluate
from floodcache.evaluate.table import load_evaluation


def test_evaluate_on_a_full_disk_says_so_and_leaves_no_stale_metadata(
    train_cache, tmp_path, monkeypatch
):
    out = tmp_path / "eval"
    config = EvaluateConfig(train_cache, out, eval_prompts="none", split="val", progress=False)
    run_evaluate(config)
    replace = os.replace

    def disk_full_at_the_csv(source, target):
        if str(target).endswith(".csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(source, target)

    monkeypatch.setattr(os, "replace", disk_full_at_the_csv)
    config.eval_prompts, config.overwrite = "box", True  # another evaluation, replacing it
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
