"""The run folder: written whole or not at all, and read only as weights."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import cli
from floodcache.sam.checkpoints import CheckpointError
from floodcache.train.config import TrainConfig
from floodcache.train.run import run_train
from floodcache.train.weights import load_run


def test_a_full_disk_at_the_final_save_says_so_and_keeps_the_resumable_state(
    train_cache, tmp_path, monkeypatch
):
    real_save = torch.save

    def full_at_the_decoder(obj, path, *args, **kwargs):
        if Path(path).name == "decoder.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_the_decoder)
    out = tmp_path / "run"
    config = TrainConfig(train_cache, out, train_prompts="none", epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"could not write .*run \(.*No space left.*with room"):
        run_train(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.partial"]  # nothing half
    monkeypatch.setattr(torch, "save", real_save)
    assert run_train(config).best_epoch == 1  # the rerun finishes from the saved epoch
    assert (out / "decoder.pt").is_file()


class NotWeights:
    """Pickled as a class: loading it would run code."""


def test_a_decoder_file_that_is_not_weights_is_named_and_never_unpickled(
    train_cache, finetuned_run, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    for content, says in [(NotWeights(), "Python objects other than tensors"), ([1, 2], "list")]:
        torch.save(content, run / "decoder.pt")
        with pytest.raises(CheckpointError, match=says) as refused:
            load_run(run)
        assert str(run / "decoder.pt") in str(refused.value)
        assert "weights_only" not in str(refused.value)
    assert loads and all(k.get("weights_only") is True for k in loads)
    args = ["evaluate", "--cache", str(train_cache), "--decoder", str(run), "--split", "val"]
    result = CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path / "evaluation")])
    assert result.exit_code == 1 and str(run / "decoder.pt") in result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
