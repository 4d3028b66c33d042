"""Decoder training from the cache: it learns, it is reproducible and resumable, its output
loads into SAM."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.sam import decoder
from floodcache.train.config import TrainConfig
from floodcache.train.run import run_train
from floodcache.train.trainer import DecoderTrainer
from floodcache.utils import estimate
from tests.helpers import PROJECT, press_ctrl_c, start_interruptible


def train(cache, out, prompt, **overrides):
    settings = dict(
        cache=cache, out=out, train_prompts=prompt, epochs=4, lr=3e-4, batch_size=8, progress=False
    )
    return run_train(TrainConfig(**(settings | overrides)))


@pytest.mark.parametrize("prompt", ["box", "point", "none"])
def test_loss_goes_down_and_val_iou_goes_up(train_cache, tmp_path, prompt):
    result = train(train_cache, tmp_path / prompt, prompt)
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < first.train_loss
    assert last.val_iou > first.val_iou
    assert result.best_epoch > 1
    with open(tmp_path / prompt / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_iou", "val_loss", "val_iou"} <= rows[0].keys()
    assert all(0 < float(r["val_seconds"]) < float(r["seconds"]) for r in rows)
    assert 0 < result.validation_share < 1


def test_saved_decoder_loads_into_segment_anything(train_cache, tmp_path):
    result = train(train_cache, tmp_path / "run", "box+point", epochs=1)
    state = torch.load(result.out / "decoder.pt", weights_only=True)
    mask_decoder = decoder.build_mask_decoder()
    mask_decoder.load_state_dict(state)  # strict: every key and shape of SAM's MaskDecoder
    record = json.loads((result.out / "config.json").read_text())
    with Cache.open(train_cache) as cache:
        assert record["cache_fingerprint"] == cache.fingerprint
        pretrained = cache.sam_state("mask_decoder")
    assert (
        record["config"]["train_prompts"] == "box+point"
        and record["prompts"]["box+point"]["oracle"]
    )
    assert record["config"]["precision"] == "fp32"  # `auto`, as resolved on a CPU
    changed = [k for k in state if not np.array_equal(state[k].numpy(), pretrained[k])]
    assert changed  # it was trained, not copied


def test_training_is_reproducible_from_the_seed(train_cache, tmp_path):
    runs = [
        train(train_cache, tmp_path / f"run{i}", "point,box", epochs=2, seed=7) for i in range(2)
    ]
    other = train(train_cache, tmp_path / "other", "point,box", epochs=2, seed=8)
    states = [torch.load(r.out / "decoder.pt", weights_only=True) for r in (*runs, other)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert [h.train_loss for h in runs[0].history] == [h.train_loss for h in runs[1].history]
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_an_earlier_run_is_never_overwritten(train_cache, tmp_path):
    train(train_cache, tmp_path / "run", "none", epochs=1)
    before = (tmp_path / "run" / "decoder.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(train_cache, tmp_path / "run", "none", epochs=1)
    assert (tmp_path / "run" / "decoder.pt").read_bytes() == before
    train(train_cache, tmp_path / "run", "none", epochs=1, overwrite=True, seed=3)
    assert (tmp_path / "run" / "decoder.pt").read_bytes() != before


def test_interrupted_training_resumes_to_the_same_decoder(train_cache, tmp_path, monkeypatch):
    reference = train(train_cache, tmp_path / "reference", "box", epochs=3)
    real_epoch = DecoderTrainer.run_epoch

    def interrupted(self, strategies, views, config, epoch, train, bar=None):
        if epoch == 3 and train:
            raise KeyboardInterrupt
        return real_epoch(self, strategies, views, config, epoch, train, bar)

    monkeypatch.setattr(DecoderTrainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(train_cache, tmp_path / "run", "box", epochs=3)
    assert (tmp_path / "run.partial" / "state.pt").exists() and not (tmp_path / "run").exists()
    monkeypatch.undo()
    with pytest.raises(CacheError, match="other settings"):
        train(train_cache, tmp_path / "run", "box", epochs=3, lr=1e-3)
    resumed = train(train_cache, tmp_path / "run", "box", epochs=3)
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in reference.history]
    ours = torch.load(resumed.out / "decoder.pt", weights_only=True)
    theirs = torch.load(reference.out / "decoder.pt", weights_only=True)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not (tmp_path / "run.partial").exists()


def test_ctrl_c_during_train_says_how_to_resume(train_cache, tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(PROJECT / "cli.py"),
        "train",
        "--cache",
        str(train_cache),
        "--train-prompts",
        "none",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--out",
        str(out),
    ]
    process = start_interruptible(command)
    while not (tmp_path / "run.partial" / "state.pt").exists():
        assert process.poll() is None, "training finished before it could be interrupted"
        time.sleep(0.05)
    press_ctrl_c(process)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "run the same command again to resume" in stderr
    finish = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "resuming" in finish.stderr and (out / "decoder.pt").exists()
    with open(out / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2, 3, 4]


def test_bf16_training_learns_and_fp16_is_refused(train_cache, tmp_path):
    result = train(train_cache, tmp_path / "bf16", "box", epochs=3, precision="bf16")
    assert result.history[-1].val_iou > result.history[0].val_iou
    record = json.loads((result.out / "config.json").read_text())
    assert record["config"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="fp32 or bf16"):
        train(train_cache, tmp_path / "fp16", "box", epochs=1, precision="fp16")


def test_training_on_a_cpu_says_its_time_after_the_first_epoch(
    train_cache, tmp_path, monkeypatch, capsys
):
    """A fake clock: every epoch reports 30 s. After the first of 3, the 2 left are
    announced as about 60 s, once, with what is quicker than a CPU."""
    from floodcache.train import run as train_run

    epoch = train_run._epoch

    def thirty_seconds(*args, **kwargs):
        return dataclasses.replace(epoch(*args, **kwargs), seconds=30.0)

    monkeypatch.setattr(train_run, "_epoch", thirty_seconds)
    config = TrainConfig(train_cache, tmp_path / "run", "none", epochs=3, device="cpu")
    config.progress = False
    train_run.run_train(config)
    said = [line for line in capsys.readouterr().out.splitlines() if "left" in line]
    assert said == [
        "train: about 60 s for the 2 epochs left (30 s an epoch, measured on the first 1); "
        + estimate.CPU_ALTERNATIVES
    ]
