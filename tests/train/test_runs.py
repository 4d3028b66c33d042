"""A run's record (config.json): one typed class reads and writes it, as runs made before
wrote it; its history read without torch; damage named with the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from floodcache.train.config import TrainConfig
from floodcache.train.runs import RECORD, RunRecord, describe_run, read_history

# config.json as `train` wrote it before the record was a class
WRITTEN_BEFORE = {
    "config": {
        "cache": "cache/flood.h5",
        "out": "runs/flood-point+box+none",
        "train_prompts": "point,box,none",
        "epochs": 15,
        "lr": 0.0001,
        "step_size": 5,
        "gamma": 0.5,
        "batch_size": 16,
        "seed": 0,
        "points": 3,
        "box_jitter": 0.1,
        "device": None,
        "overwrite": False,
        "progress": True,
        "memory_fraction": 0.5,
        "precision": "bf16",
    },
    "prompts": {
        "point": {"oracle": True, "multimask": True},
        "box": {"oracle": True, "multimask": False},
        "none": {"oracle": False, "multimask": False},
    },
    "cache_fingerprint": "f" * 64,
    "model_type": "vit_b",
    "checkpoint_sha256": "c" * 64,
    "best_epoch": 12,
    "best_val_iou": 0.8125,
}


def test_a_record_written_before_is_read_typed_and_written_back_the_same(tmp_path):
    (tmp_path / RECORD).write_text(json.dumps(WRITTEN_BEFORE, indent=1))
    record = RunRecord.read(tmp_path)
    assert isinstance(record.config, TrainConfig) and record.config.cache == Path("cache/flood.h5")
    assert (record.config.precision, record.best_epoch) == ("bf16", 12)
    assert list(record.prompts) == ["point", "box", "none"]
    assert record.identity["lr"] == 0.0001 and record.identity["cache_fingerprint"] == "f" * 64
    again = tmp_path / "again"
    again.mkdir()
    record.write(again)
    assert (again / RECORD).read_text() == json.dumps(WRITTEN_BEFORE, indent=1)


def test_a_record_of_a_setting_no_longer_known_is_still_read(tmp_path):
    old = json.loads(json.dumps(WRITTEN_BEFORE))
    old["config"]["retired_setting"] = 1
    (tmp_path / RECORD).write_text(json.dumps(old))
    assert RunRecord.read(tmp_path).config.epochs == 15


def test_a_run_written_by_train_reads_back_as_its_config(finetuned_run, train_cache):
    record = describe_run(finetuned_run).record
    assert record.config.train_prompts == "point,box,none" and record.config.cache == train_cache
    assert record.best_epoch == 1 and record.model_type == "vit_tiny"


def test_a_config_json_that_is_not_a_run_record_names_the_file_and_the_fix(tmp_path):
    (tmp_path / RECORD).write_text(json.dumps({"prompts": {}}))
    with pytest.raises(ValueError, match=r"config.json is not a run's record .*train it again"):
        RunRecord.read(tmp_path)


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
