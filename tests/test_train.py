"""Decoder training from the cache: it learns, it is reproducible, its output loads into SAM."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from floodcache import decoder
from floodcache.cache import Cache, CacheError
from floodcache.prompts import PROMPTS, PromptOptions
from floodcache.train import (
    DecoderTrainer,
    TrainConfig,
    resolve_precision,
    run_train,
    views_per_pass,
)
from floodcache.train_views import Views, lowres_prompt, make_batches
from tests.conftest import PROJECT, press_ctrl_c, start_interruptible


def train(cache, out, prompt, **overrides):
    settings = dict(
        cache=cache, out=out, prompt=prompt, epochs=4, lr=3e-4, batch_size=8, progress=False
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


def test_saved_decoder_loads_into_segment_anything(train_cache, tmp_path):
    result = train(train_cache, tmp_path / "run", "box+point", epochs=1)
    state = torch.load(result.out / "decoder.pt", weights_only=True)
    mask_decoder = decoder.build_mask_decoder()
    mask_decoder.load_state_dict(state)  # strict: every key and shape of SAM's MaskDecoder
    record = json.loads((result.out / "config.json").read_text())
    with Cache.open(train_cache) as cache:
        assert record["cache_fingerprint"] == cache.fingerprint
        pretrained = cache.sam_state("mask_decoder")
    assert record["config"]["prompt"] == "box+point" and record["prompts"]["box+point"]["oracle"]
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


@pytest.mark.parametrize("name", ["point", "box"])
def test_a_step_in_passes_follows_the_gradient_of_the_whole_batch(train_cache, tmp_path, name):
    """A CPU decodes a batch a few views at a time: the loss, IoU and gradient are the batch's."""
    strategy = PROMPTS[name]
    with Cache.open(train_cache) as cache:
        views = Views(cache, "train", in_memory=True)
        index = np.arange(len(views))
        prompts = [lowres_prompt(strategy, views, int(i), 0, 1, PromptOptions()) for i in index]
        index = index[[p is not None for p in prompts]]
        prompts = [p for p in prompts if p is not None]
        results = {}
        for passes in (None, 1, 3):
            trainer = DecoderTrainer(cache, TrainConfig(train_cache, tmp_path, device="cpu"))
            trainer.views_per_pass = passes
            totals = trainer.step(strategy, views, index, prompts, train=True)
            grads = {k: p.grad for k, p in trainer.mask_decoder.named_parameters()}
            results[passes] = totals, grads
    whole_totals, whole_grads = results[None]
    scale = max(grad.abs().max() for grad in whole_grads.values())
    for passes in (1, 3):
        totals, grads = results[passes]
        torch.testing.assert_close(totals, whole_totals, rtol=1e-5, atol=0)
        for key, grad in grads.items():
            torch.testing.assert_close(grad, whole_grads[key], rtol=1e-4, atol=1e-5 * scale)


def test_a_cpu_decodes_one_fp32_view_at_a_time():
    assert views_per_pass(torch.device("cpu"), "fp32") == 1
    assert views_per_pass(torch.device("cpu"), "bf16") == 2  # half the bytes per activation
    assert views_per_pass(torch.device("cuda"), "fp32") is None  # the whole batch


def test_an_earlier_run_is_never_overwritten(train_cache, tmp_path):
    train(train_cache, tmp_path / "run", "none", epochs=1)
    before = (tmp_path / "run" / "decoder.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(train_cache, tmp_path / "run", "none", epochs=1)
    assert (tmp_path / "run" / "decoder.pt").read_bytes() == before
    train(train_cache, tmp_path / "run", "none", epochs=1, overwrite=True, seed=3)
    assert (tmp_path / "run" / "decoder.pt").read_bytes() != before


class FakeViews:
    """What make_batches reads of a split: low-res targets, ids, views and input sizes."""

    def __init__(self, targets: np.ndarray):
        self.targets = targets
        self.image_id = np.array([str(i) for i in range(len(targets))])
        self.view = np.zeros(len(targets), int)
        self.input_size = np.full((len(targets), 2), 1024)

    def __len__(self) -> int:
        return len(self.targets)


def test_views_without_water_are_skipped_for_oracle_prompts_only():
    targets = np.zeros((3, 256, 256), np.uint8)
    targets[0, 10:50, 20:80] = 1  # only view 0 has water
    for name, expected_skips in (("box", 2), ("point", 2), ("none", 0)):
        batches, skipped = make_batches(
            [PROMPTS[name]], FakeViews(targets), 0, 1, PromptOptions(), 8, True
        )
        assert skipped == expected_skips
        assert sum(len(index) for _, index, _ in batches) == 3 - expected_skips


def test_prompts_land_on_the_water_in_the_input_frame():
    """A low-res water pixel (row 10, col 20) maps to input pixels 40..43 x 80..83."""
    targets = np.zeros((1, 256, 256), np.uint8)
    targets[0, 10, 20] = 1
    batches, _ = make_batches([PROMPTS["box"]], FakeViews(targets), 0, 1, PromptOptions(), 8, False)
    x0, y0, x1, y1 = batches[0][2][0].box
    assert 80 <= x0 <= x1 <= 83 and 40 <= y0 <= y1 <= 43


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
        "--prompt",
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


def test_auto_precision_is_bf16_on_a_gpu_and_fp32_on_a_cpu():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"  # asked: kept
