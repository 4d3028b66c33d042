"""`bench`: the usual SAM fine-tuning workflow against floodcache's, in one process, same data.

Stages, each timed on the same views (views/s, peak memory, ratio to the reference):

    reference SamPredictor   SamPredictor.set_image, fp32, one image at a time (`encoders`)
    reference train step     that encoder forward plus one decoder training step on the view
                             (forward, BCE + Dice, backward, Adam): fine-tuning that runs the
                             encoder at every step
    encoder ... P            the image encoder alone, batched, in each precision P, with SAM's
                             attention and with the fast path (`fast_encoder`; compiled on
                             CUDA); relative error and decoded-mask IoU against the fp32
                             reference
    embed (after 1st batch)  the `embed` command, for each resize, and its readers alone
                             (`bench.embed`)
    predict (folder)         the `predict` command on a folder of `views` images
                             (`bench.predict`)
    predict (GeoTIFF)        the `predict` command on a GeoTIFF of about `views` tiles made
                             of those images
    train from cache         floodcache.train's own step on the cached embeddings (here)
    explore                  the explorer's answer to one prompt: both decoders, masks at
                             preview size, IoUs (`bench.explore`)

then the cache's bytes per view, write and read times, with and without compression, and
embed's writing side alone, in line and in the background (`bench.io`). `bench.table` holds
the rows, the table and how a stage is timed.
Speed does not depend on the weights: without a checkpoint SAM has random weights, and errors
and IoUs then describe an untrained model (the output says so).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from floodcache.bench import io
from floodcache.bench.config import BenchConfig
from floodcache.bench.embed import compare_embed, dataset, embed_settings, embed_stage
from floodcache.bench.encoders import (
    bench_views,
    cpu_precision_note,
    encoders,
    reference_stages,
)
from floodcache.bench.predict import geotiff_stage, predict_folder, predict_stage
from floodcache.bench.reading import reading_row
from floodcache.bench.table import Bench, Row, hold_gpu_memory
from floodcache.bench.train import train_row
from floodcache.sam.checkpoints import RANDOM_WEIGHTS
from floodcache.sam.model import load_or_random_sam
from floodcache.sam.precision import pick_device

WRITING_BATCH = 32  # the writing stage's views per part: embed's batch on a large GPU


def run_bench(config: BenchConfig) -> Bench:
    """Measure every stage on the same views; return the results (and write JSON if asked)."""
    device = pick_device(config.device)
    with hold_gpu_memory(device, config.free_gpu_memory) as card:
        sam, sha = load_or_random_sam(
            config.model_type, config.checkpoint, config.checkpoint is None
        )
        weights = "RANDOM WEIGHTS (speed only)" if sha == RANDOM_WEIGHTS else f"checkpoint {sha}"
        sam.to(device).eval()
        with tempfile.TemporaryDirectory(prefix="floodcache-bench-") as tmp:
            data_dir, augment = dataset(config, Path(tmp))
            views = bench_views(data_dir, augment, config.views)
            bench = Bench(f"{device}{card}", config.model_type, weights, len(views))
            bench.precision_note = cpu_precision_note(device)
            reference, ref_train, features = reference_stages(
                sam, views[: config.reference_views], device
            )
            bench.add(reference, ref_train)
            encoders(bench, sam, views, features, device, config)
            cache = Path(tmp) / "bench.h5"
            for resize in config.resizes:
                bench.add(*embed_stage(config, data_dir, augment, cache, device, resize))
            if {"predict", "geotiff"} - config.skip:
                folder = predict_folder(sam, config.model_type, config.checkpoint, data_dir,
                                        config.views, Path(tmp))  # fmt: skip
            if "predict" not in config.skip:
                bench.add(predict_stage(folder, device))
            if "geotiff" not in config.skip:
                bench.add(geotiff_stage(folder, config.views, Path(tmp), device))
            bench.add(*[train_row(config, cache, device, p) for p in ("fp32", "bf16")])
            if "reading" not in config.skip:
                bench.add(reading_row(cache))
            if "iterate" not in config.skip:
                settings = embed_settings(config, data_dir, augment, cache, device, "pil")
                bench.add(_iterate(settings, Path(tmp), device))
            if "explore" not in config.skip:
                bench.add(_explore(cache, device))
            if "compression" not in config.skip:
                bench.compression = io.compression(cache, Path(tmp) / "compression.h5")
            if "writing" not in config.skip:
                bench.writing = io.writing(cache, Path(tmp), WRITING_BATCH)
    compare_embed(bench, device)
    if config.json_path:
        Path(config.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json_path).write_text(json.dumps(bench.to_json(), indent=1))
    return bench


def _iterate(settings, folder: Path, device) -> Row:
    """The iterate row; imported here, since it reports, and a report needs polars and
    matplotlib, which a machine that only embeds and trains need not have."""
    from floodcache.bench.iterate import iterate_row

    return iterate_row(settings, folder, device)


def _explore(cache: Path, device) -> Row:
    """The explore row; imported here, since the explorer reads its evaluation with polars."""
    from floodcache.bench.explore import explore_row

    return explore_row(cache, device)
