"""The evaluation folder, written whole: a full disk leaves no stale metadata."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import replace

import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from floodcache.evaluate.config import EvaluateConfig
from floodcache.evaluate.evaluate import run_evaluate
from floodcache.evaluate.table import DamagedEvaluation, load_evaluation


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


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty_table(path):
    pl.read_parquet(path).clear().write_parquet(path)


def _without_models(path):
    metadata = json.loads(path.read_text())
    del metadata["models"]
    path.write_text(json.dumps(metadata))


DAMAGES = {
    "a truncated metrics.parquet": ("metrics.parquet", _truncate, "cannot be read"),
    "a truncated masks.parquet": ("masks.parquet", _truncate, "cannot be read"),
    "an empty metrics.parquet": ("metrics.parquet", _empty_table, "holds no rows"),
    "evaluation.json without models": ("evaluation.json", _without_models, "needs the keys"),
    "evaluation.json that is not JSON": ("evaluation.json", _truncate, "not valid JSON"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_evaluation_is_named_and_rebuilt_with_overwrite(
    finetuned_evaluation, tmp_path, damage
):
    """Each of these gave report and evaluate a polars or KeyError traceback, even with
    --overwrite."""
    config, _ = finetuned_evaluation
    out = tmp_path / "evaluation"
    shutil.copytree(config.out, out)
    name, change, says = DAMAGES[damage]
    change(out / name)
    result = CliRunner().invoke(main, ["report", "--metrics", str(out), "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{out / name} is damaged" in result.output and says in result.output
    assert "--overwrite" in result.output
    with pytest.raises(DamagedEvaluation, match=f"{out / name} is damaged"):
        run_evaluate(replace(config, out=out))
    rebuilt = run_evaluate(replace(config, out=out, overwrite=True))
    assert not rebuilt.reused and load_evaluation(out)[0].equals(rebuilt.table)
