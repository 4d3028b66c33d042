"""`bench`: the usual SAM fine-tuning workflow against floodcache's, in one process, same data.

Stages, each timed on the same views (views/s, peak memory, ratio to the reference):

    reference SamPredictor   SamPredictor.set_image, fp32, one image at a time (`bench_encoder`)
    reference train step     that encoder forward plus one decoder training step on the view
                             (forward, BCE + Dice, backward, Adam): fine-tuning that runs the
                             encoder at every step
    encoder ... P            the image encoder alone, batched, in each precision P, with SAM's
                             attention and with the fast path (`fast_encoder`; compiled on
                             CUDA); relative error and decoded-mask IoU against the fp32
                             reference
    embed (after 1st batch)  the `embed` command, for each resize, and its readers alone
                             (`bench_embed`)
    predict (folder)         the `predict` command on a folder of `views` images
                             (`bench_predict`)
    train from cache         floodcache.train's own step on the cached embeddings (here)

then the cache's bytes per view, write and read times, with and without compression, and
embed's writing side alone, in line and in the background (`bench_io`). `bench_table` holds
the rows, the table and how a stage is timed.
Speed does not depend on the weights: without a checkpoint SAM has random weights, and errors
and IoUs then describe an untrained model (the output says so).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from floodcache import bench_io, encoder
from floodcache.bench_embed import compare_embed, dataset, embed_stage
from floodcache.bench_encoder import bench_views, encoders, reference_stages
from floodcache.bench_predict import predict_stage
from floodcache.bench_table import Bench, PeakMemory, Row, hold_gpu_memory, timed
from floodcache.cache import Cache
from floodcache.prompts import PROMPTS, PromptOptions
from floodcache.train import DecoderTrainer, TrainConfig
from floodcache.train_views import Views, lowres_prompt

WRITING_BATCH = 32  # the writing stage's views per part: embed's batch on a large GPU


@dataclass
@dataclass
class BenchConfig:
    """What `bench` measures, and where."""

    device: str | None = None  # default: cuda when available
    views: int = 8  # views per stage: 2 on a CPU (ViT-B ~14 s each), ~500 on a GPU
    # embed's views, if more: a longer run shows its steady rate better (the other stages
    # hold all their views in memory; embed reads its own from disk)
    embed_views: int | None = None
    model_type: str = "vit_b"
    checkpoint: Path | None = None  # default: random weights (speed does not depend on them)
    data_dir: Path | None = None  # real images (Kaggle layout) instead of generated scenes
    batch_size: int | None = None  # encoder views per call; default: from free memory
    train_batch_size: int | None = None  # decoder views per step; default 16 CPU, 64 GPU
    train_steps: int = 8  # timed decoder steps
    workers: int | None = None  # embed's reader processes (default: embed's, cores - 1)
    # embed's resize to SAM's input, "pil" (readers) or "torch" (device): embed runs for each
    resizes: tuple[str, ...] = ("pil",)
    reference_views: int = 64  # the reference runs on the first N views (it is slow)
    # On a GPU: hold all but this many GiB before starting, to act as a smaller card
    free_gpu_memory: float | None = None
    skip: frozenset[str] = frozenset()
    json_path: Path | None = None


def run_bench(config: BenchConfig) -> Bench:
    """Measure every stage on the same views; return the results (and write JSON if asked)."""
    device = encoder.pick_device(config.device)
    with hold_gpu_memory(device, config.free_gpu_memory) as card:
        sam, sha = encoder.load_or_random_sam(
            config.model_type, config.checkpoint, config.checkpoint is None
        )
        weights = "RANDOM WEIGHTS (speed only)" if sha == "random-weights" else f"checkpoint {sha}"
        sam.to(device).eval()
        with tempfile.TemporaryDirectory(prefix="floodcache-bench-") as tmp:
            data_dir, augment = dataset(config, Path(tmp))
            views = bench_views(data_dir, augment, config.views)
            bench = Bench(f"{device}{card}", config.model_type, weights, len(views))
            reference, ref_train, features = reference_stages(
                sam, views[: config.reference_views], device
            )
            bench.add(reference, ref_train)
            encoders(bench, sam, views, features, device, config)
            cache = Path(tmp) / "bench.h5"
            for resize in config.resizes:
                bench.add(*embed_stage(config, data_dir, augment, cache, device, resize))
            if "predict" not in config.skip:
                bench.add(
                    predict_stage(sam, config.model_type, config.checkpoint, data_dir,
                                  config.views, Path(tmp), device)
                )  # fmt: skip
            bench.add(*[_train(config, cache, device, p) for p in ("fp32", "bf16")])
            if "compression" not in config.skip:
                bench.compression = bench_io.compression(cache, Path(tmp) / "compression.h5")
            if "writing" not in config.skip:
                bench.writing = bench_io.writing(cache, Path(tmp), WRITING_BATCH)
    compare_embed(bench, device)
    if config.json_path:
        Path(config.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json_path).write_text(json.dumps(bench.to_json(), indent=1))
    return bench


def _train(config: BenchConfig, cache: Path, device: torch.device, precision: str) -> Row:
    """floodcache.train's step on cached embeddings: `box` prompts, batches of cycled views."""
    batch = config.train_batch_size or (64 if device.type == "cuda" else 16)
    strategy = PROMPTS["box"]
    with Cache.open(cache) as opened:
        views = Views(opened, "train", in_memory=True)
        options = PromptOptions(box_jitter=0.0)
        index = np.arange(batch) % len(views)
        prompts = [lowres_prompt(strategy, views, int(i), 0, 1, options) for i in index]
        index = index[[p is not None for p in prompts]]
        prompts = [p for p in prompts if p is not None]
        settings = TrainConfig(cache, cache.parent, device=str(device), precision=precision)
        trainer = DecoderTrainer(opened, settings)
        trainer.step(strategy, views, index, prompts, train=True)  # warm-up, untimed

        def run() -> None:
            for _ in range(config.train_steps):
                trainer.step(strategy, views, index, prompts, train=True)

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
