"""Training batches: prompts made from the cached targets, on the water, skipped without it."""

from __future__ import annotations

import numpy as np

from floodcache.prompts import PROMPTS, PromptOptions
from floodcache.train.batches import PromptDraw, make_batches


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
            [PROMPTS[name]], FakeViews(targets), PromptDraw(0, 1, PromptOptions()), 8, True
        )
        assert skipped == expected_skips
        assert sum(len(index) for _, index, _ in batches) == 3 - expected_skips


def test_prompts_land_on_the_water_in_the_input_frame():
    """A low-res water pixel (row 10, col 20) maps to input pixels 40..43 x 80..83."""
    targets = np.zeros((1, 256, 256), np.uint8)
    targets[0, 10, 20] = 1
    batches, _ = make_batches(
        [PROMPTS["box"]], FakeViews(targets), PromptDraw(0, 1, PromptOptions()), 8, False
    )
    x0, y0, x1, y1 = batches[0][2][0].box
    assert 80 <= x0 <= x1 <= 83 and 40 <= y0 <= y1 <= 43


def test_the_first_epoch_goes_window_by_window_in_reading_order(monkeypatch):
    """Each first-epoch batch needs only the views read so far; later epochs shuffle all."""
    from floodcache.train import batches as module

    monkeypatch.setattr(module, "STREAM_WINDOW", 4)
    targets = np.zeros((10, 256, 256), np.uint8)
    targets[:, 100:150, 100:150] = 1
    mix = [PROMPTS["box"], PROMPTS["none"]]

    def first_epoch():
        return make_batches(mix, FakeViews(targets), PromptDraw(3, 1, PromptOptions()), 3, True)[0]

    batches = first_epoch()
    needed = [int(index.max()) for _, index, _ in batches]
    windows = [int(index.max()) // 4 for _, index, _ in batches]
    assert [int(index.min()) // 4 for _, index, _ in batches] == windows
    assert windows == sorted(windows) and needed[0] < 4  # the first batch: the first window
    assert sorted(np.concatenate([index for _, index, _ in batches]).tolist()) == list(range(10))
    assert [index.tolist() for _, index, _ in first_epoch()] == [i.tolist() for _, i, _ in batches]
    later = make_batches(mix, FakeViews(targets), PromptDraw(3, 2, PromptOptions()), 3, True)[0]
    assert any(int(i.max()) // 4 != int(i.min()) // 4 for _, i, _ in later)  # across windows


def test_training_starts_before_the_embeddings_are_all_read(
    train_cache, tmp_path, monkeypatch, caplog
):
    """A slow disk: the first steps run on the views read so far; the log says what was read,
    how fast."""
    import logging
    import re
    import time

    from floodcache.cache import loading
    from floodcache.train import batches as module
    from floodcache.train.config import TrainConfig
    from floodcache.train.run import run_train
    from floodcache.train.trainer import DecoderTrainer

    monkeypatch.setattr(module, "STREAM_WINDOW", 2)
    monkeypatch.setattr(loading, "READ_BYTES", 1)  # one view a read
    read = loading.RowLoader._read

    def slow_read(self, *args):
        time.sleep(0.3)
        return read(self, *args)

    monkeypatch.setattr(loading.RowLoader, "_read", slow_read)
    read_when_stepping, step = [], DecoderTrainer.step

    def noted_step(self, strategy, views, index, prompts, train):
        if train and views.loader is not None:
            read_when_stepping.append(views.loader.stats.views)
        return step(self, strategy, views, index, prompts, train)

    monkeypatch.setattr(DecoderTrainer, "step", noted_step)
    config = TrainConfig(train_cache, tmp_path / "run", "none", epochs=1, batch_size=2)
    config.progress = False
    with caplog.at_level(logging.DEBUG):  # how fast the reading went: --verbose
        run_train(config)
    assert read_when_stepping[0] < 8  # 8 training views in train_cache
    said = r"embeddings read: train 8 views, \d+ MiB in \d+\.\d s \(\d+ MiB/s\)"
    assert re.search(said, caplog.text), caplog.text
    assert read_when_stepping == sorted(read_when_stepping)
