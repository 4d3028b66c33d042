"""`bench`'s iterate row: what a user waits for once the cache exists, `train` then `evaluate`
and `report`, on a cache of bench's views split as `embed` splits them, against the reference
workflow, whose training reruns the encoder at every step."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from floodcache.bench.table import PeakMemory, Row
from floodcache.data.synthetic import write_scenes
from floodcache.embed.config import EmbedConfig
from floodcache.embed.run import run_embed
from floodcache.evaluate.config import EvaluateConfig
from floodcache.report.config import ReportConfig
from floodcache.report.report import run_report
from floodcache.sam.precision import resolve_precision
from floodcache.settings import DEFAULT_FRACTIONS
from floodcache.train.config import TrainConfig
from floodcache.train.run import run_train

if TYPE_CHECKING:
    import torch

EPOCHS = TrainConfig.epochs  # a default run's


def iterate_row(settings: EmbedConfig, folder: Path, device: torch.device) -> Row:
    """Embed bench's views with the default split (not timed), then time train, evaluate and
    report as `run` does them. views/s: training view-steps a second over the whole loop."""
    cache = folder / "iterate.h5"
    # three images at least: one each for training, validation and the test
    assert settings.data_dir is not None, "the bench's settings name the folder it generates"
    data_dir, limit = Path(settings.data_dir), max(settings.limit or 0, 3)
    if len(list((data_dir / "Image").iterdir())) < limit:
        data_dir = write_scenes(folder / "iterate-data", limit)
    settings = replace(settings, data_dir=data_dir, limit=limit, cache=cache)
    run_embed(replace(settings, fractions=DEFAULT_FRACTIONS))
    mix = "point,box,none"
    train = TrainConfig(cache, folder / "iterate-run", mix, epochs=EPOCHS, device=str(device))
    train.progress = False
    evaluate = EvaluateConfig(
        cache, folder / "iterate-report", (train.run_folder,), device=str(device)
    )
    evaluate.progress = False
    with PeakMemory(device) as peak:
        start = time.perf_counter()
        result = run_train(train)
        trained = time.perf_counter()
        run_report(ReportConfig(evaluate=evaluate))
        end = time.perf_counter()
    steps = sum(epoch.views for epoch in result.history)
    note = (
        f"train {EPOCHS} epochs ({mix}) {trained - start:.1f} s, evaluate + report "
        f"{end - trained:.1f} s; views/s: training view-steps a second over all three"
    )
    return Row(
        "iterate",
        resolve_precision(train.precision, device, "train"),
        train.batch_size,
        steps,
        end - start,
        peak.megabytes(),
        note=note,
    )
