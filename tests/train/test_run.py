"""Decoder training from the cache: it learns, it is reproducible and resumable, its output
loads into SAM."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from floodcache.cache.format import CacheError
from floodcache.cache.reader import Cache
from floodcache.runtime import Runtime
from floodcache.sam import decoder
from floodcache.sam.checkpoints import CheckpointError
from floodcache.sam.model import save_weights
from floodcache.train.config import TrainConfig
from floodcache.train.run import Progress, run_train
from floodcache.train.trainer import DecoderTrainer
from floodcache.utils import estimate
from floodcache.utils.identity import identity_fields
from tests.helpers import PROJECT, RUN_CHANGES, press_ctrl_c, start_interruptible


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


def test_every_identity_field_must_match_to_resume_an_unfinished_run(
    train_cache, tiny_cache, tmp_path
):
    config = TrainConfig(train_cache, tmp_path / "run", epochs=1, precision="fp32", progress=False)
    assert set(RUN_CHANGES) == set(identity_fields(TrainConfig)), "give each field a change"
    with Cache.open(train_cache) as cache:
        unfinished = Progress(config, cache)
        unfinished.folder.mkdir()
        save_weights({"identity": unfinished.identity}, unfinished.folder / "state.pt")
        trainer = DecoderTrainer(cache, config, Runtime.resolve("cpu", "fp32", "train"))
        for name, value in RUN_CHANGES.items():
            with pytest.raises(CacheError, match=f"\n  {name}: run has"):
                Progress(replace(config, **{name: value}), cache).resume(trainer)
        # the same identity goes on to load the state (this one holds no decoder)
        with pytest.raises(CheckpointError, match="not a whole training state"):
            Progress(replace(config, memory_fraction=0.1), cache).resume(trainer)
    with Cache.open(tiny_cache) as other, pytest.raises(CacheError, match="cache_fingerprint"):
        Progress(config, other).resume(trainer)


def test_a_diverged_training_writes_no_decoder(train_cache, tmp_path):
    """--lr 1e4 gave an all-NaN decoder, saved as the best, exit 0."""
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="diverged at epoch 1 .*smaller --lr than 10000"):
        train(train_cache, out, "box", lr=1e4, epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, nothing partial


def test_the_best_epoch_before_a_divergence_is_kept(train_cache, tmp_path, monkeypatch):
    real_epoch = DecoderTrainer.run_epoch

    def nan_at_epoch_2(self, strategies, views, config, epoch, train, bar=None):
        loss, iou, count, skipped = real_epoch(self, strategies, views, config, epoch, train, bar)
        return (float("nan") if epoch == 2 else loss), iou, count, skipped

    monkeypatch.setattr(DecoderTrainer, "run_epoch", nan_at_epoch_2)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=f"diverged at epoch 2 .*{out} keeps epoch 1"):
        train(train_cache, out, "box", epochs=3)
    record = json.loads((out / "config.json").read_text())
    assert (record["best_epoch"], record["diverged_epoch"]) == (1, 2)
    state = torch.load(out / "decoder.pt", weights_only=True)
    assert all(torch.isfinite(value).all() for value in state.values())
    assert not (tmp_path / "run.partial").exists()


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("lr", float("inf"), "--lr must be a finite number above 0"),
        ("gamma", float("inf"), "--gamma must be a finite number above 0"),
        ("lr", float("nan"), "--lr must be a finite number above 0"),
        ("box_jitter", float("inf"), "--box-jitter must be a finite number"),
        ("seed", -1, "--seed must be at least 0"),
    ],
)
def test_settings_that_must_be_finite_or_non_negative_are_refused_at_once(option, value, says):
    with pytest.raises(ValueError, match=says):
        TrainConfig(**{option: value})


def test_an_out_name_too_long_for_the_files_made_from_it_is_refused_before_training(
    train_cache, tmp_path, monkeypatch
):
    """A 248-character --out failed only when the first epoch's state was written."""
    monkeypatch.setattr(DecoderTrainer, "run_epoch", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / ("r" * 248)
    with pytest.raises(ValueError, match="--out .* 248 bytes.*choose a shorter --out"):
        train(train_cache, out, "box", epochs=1)
    assert list(tmp_path.iterdir()) == []


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
