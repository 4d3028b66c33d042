"""What `bench` is asked (`BenchConfig`) and the stages it can leave out. Torch-free, so that
the command line reads its defaults from here at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SKIPPABLE = {  # stages `bench --skip` can leave out, and what they are
    "eager-encoders": "the uncompiled encoder rows (on CUDA, where compiled ones run)",
    "mask-encoders": "the fast encoder with the mask attention where folded is the default",
    "compression": "the cache's size and I/O with compression",
    "writing": "embed's cache writing alone, in line and in the background",
    "predict": "predict on a folder of the bench's images",
    "geotiff": "predict on a GeoTIFF scene made of the bench's images",
    "reading": "the cache's embeddings read as train reads them, against a plain read",
    "iterate": "train, evaluate and report on a cache of the bench's views",
    "explore": "the explorer's answer to a prompt, both decoders, on the bench's cache",
}


@dataclass
class BenchConfig:
    """What `bench` measures, and where."""

    device: str | None = None  # default: cuda when available
    views: int = 8  # views per stage: 2 on a CPU (ViT-B takes seconds a view), ~500 on a GPU
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
