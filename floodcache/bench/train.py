"""`bench`'s training row: floodcache's own decoder step on cached embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from floodcache.bench.config import BenchConfig
from floodcache.bench.table import PeakMemory, Row, timed
from floodcache.cache.reader import Cache
from floodcache.prompts import PROMPTS, PromptOptions
from floodcache.runtime import Runtime
from floodcache.train.batches import Views, lowres_prompt
from floodcache.train.config import TrainConfig
from floodcache.train.trainer import DecoderTrainer


def train_row(config: BenchConfig, cache: Path, device: torch.device, precision: str) -> Row:
    """floodcache.train's step on cached embeddings: `box` prompts, batches of cycled views."""
    batch = config.train_batch_size or (64 if device.type == "cuda" else 16)
    strategy = PROMPTS["box"]
    with Cache.open(cache) as opened, Views(opened, "train", in_memory=True) as views:
        views.load_line()  # every view read before the timing, as in a run's later epochs
        options = PromptOptions(box_jitter=0.0)
        index = np.arange(batch) % len(views)
        prompts = [lowres_prompt(strategy, views, int(i), 0, 1, options) for i in index]
        index = index[[p is not None for p in prompts]]
        kept = [p for p in prompts if p is not None]
        settings = TrainConfig(cache, cache.parent, device=str(device), precision=precision)
        trainer = DecoderTrainer(opened, settings, Runtime(device, precision))
        trainer.step(strategy, views, index, kept, train=True)  # warm-up, untimed

        def run() -> None:
            for _ in range(config.train_steps):
                trainer.step(strategy, views, index, kept, train=True)

        with PeakMemory(device) as peak:
            seconds = timed(device, run)[1]
    return Row(
        "train from cache",
        precision,
        len(index),
        len(index) * config.train_steps,
        seconds,
        peak.megabytes(),
        note="DecoderTrainer.step, box prompts",
    )
