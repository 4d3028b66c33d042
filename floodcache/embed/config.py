"""What `embed` is asked (`EmbedConfig`, checked when made) and what it did (`EmbedResult`).

Torch-free, so that the command line reads its defaults from here at once."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from floodcache.data.raster import RasterReading
from floodcache.settings import (
    AUTO_PRECISION,
    DEFAULT_FRACTIONS,
    MAX_PIXELS,
    MODEL_TYPES,
    ON_MISMATCH,
    RESIZE_METHODS,
    check_at_least,
    check_choice,
    check_precision,
)
from floodcache.utils.identity import setting


@dataclass
class EmbedConfig:
    """Everything `embed` needs; each field says whether it decides that two caches differ."""

    # identity=True: a change gives another cache (`plan.identity_of`). The data folders,
    # the checkpoint's path and the limits on which pairs are usable are not: the views and
    # the checkpoint's sha256 they lead to are in the identity instead.
    cache: Path = setting(Path("cache/flood.h5"), identity=False)  # the HDF5 cache to write
    # the Kaggle layout: Image/, Mask/, optional metadata.csv
    data_dir: Path | None = setting(None, identity=False)
    images: Path | None = setting(None, identity=False)  # alternative to data_dir: images ...
    masks: Path | None = setting(None, identity=False)  # ... and masks, paired by file stem
    # default: the official file in the checkpoint folder
    checkpoint: Path | None = setting(None, identity=False)
    # explicit opt-in to an untrained SAM (smoke tests only)
    random_weights: bool = setting(False, identity=False)
    model_type: str = setting("vit_b", identity=True)
    augment: int = setting(0, identity=True)  # extra augmented views per training image
    seed: int = setting(0, identity=True)  # split and augmentation seed
    # train/val/test
    fractions: tuple[float, float, float] = setting(DEFAULT_FRACTIONS, identity=True)
    # fp16 on CUDA; on a CPU bf16 where it is native, else fp32; cache: float16
    precision: str = setting(AUTO_PRECISION, identity=True)
    # to SAM's input: "pil" in the readers, "torch" on the device; recorded as the method
    resize: str = setting("pil", identity=True, record=RESIZE_METHODS.get, key="resize_method")
    on_mismatch: str = setting("exclude", identity=True)  # or "resize": a mask to its image
    # metadata.csv may name files outside Image/ and Mask/ (absolute, or up through ..): a
    # metadata.csv from elsewhere could otherwise have any file read into the cache
    allow_outside_paths: bool = setting(False, identity=False)
    # a larger image or mask is left out, never decoded
    max_pixels: int = setting(MAX_PIXELS, identity=False)
    # Georeferenced images (GeoTIFF chips...): the bands shown to SAM and their scaling;
    # recorded only where not the default, so caches built before there was a choice keep
    # their identity
    raster: RasterReading = setting(default_factory=RasterReading, identity=True, omit_default=True)
    # embed only the first N usable images (quick trials)
    limit: int | None = setting(None, identity=True)
    # Views per encoder call and cache part (default: from the GPU's free memory, a few on a
    # CPU); does not change the result.
    batch_size: int | None = setting(None, identity=False)
    # processes reading and augmenting images (default_workers)
    workers: int | None = setting(None, identity=False)
    # compile the fast encoder; default: where it pays off
    compile: bool | None = setting(None, identity=False)
    device: str | None = setting(None, identity=False)  # default: cuda when available
    overwrite: bool = setting(False, identity=False)  # replace a cache built differently
    progress: bool = setting(True, identity=False)
    command: str = setting(default_factory=lambda: " ".join(["python", *sys.argv]), identity=False)

    def __post_init__(self) -> None:
        """Refuse a setting no run could use, before any work is done."""
        check_choice(self.model_type, MODEL_TYPES, "--model-type")
        check_precision(self.precision, "encoder")
        check_choice(self.resize, RESIZE_METHODS, "--resize")
        check_choice(self.on_mismatch, ON_MISMATCH, "--on-mismatch")
        check_at_least(self.augment, 0, "--augment")
        check_at_least(self.limit, 1, "--limit")
        check_at_least(self.batch_size, 1, "--batch-size")
        check_at_least(self.workers, 0, "--workers")
        check_at_least(self.max_pixels, 1, "--max-pixels")
        check_at_least(self.seed, 0, "--seed")
        if self.random_weights and self.checkpoint is not None:
            raise ValueError("pass either --checkpoint or --random-weights, not both")
        if abs(sum(self.fractions) - 1.0) > 1e-6 or min(self.fractions) < 0:
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {self.fractions}")


@dataclass
class EmbedResult:
    cache: Path
    views: int  # views in the cache
    embedded: int  # views encoded by this run (0 when the cache was complete already)
    seconds: float
    excluded: dict[str, list[str]]
    rank: int = 0  # under torchrun, which process this result is from
    # Until this process wrote its first batch (audit, model load, compiling, first reads) ...
    warmup_seconds: float = 0.0
    warmup_views: int = 0  # ... and the views in that batch
    finalize_seconds: float = 0.0  # finishing the cache once the last part is written
    batch_size: int = 0  # views per encoder call, as asked or picked for the device
    workers: int = 0  # reader processes, likewise

    @property
    def views_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0

    @property
    def steady_views_per_second(self) -> float:
        """The rate after the first batch: what a long run approaches (writes included)."""
        seconds = self.seconds - self.warmup_seconds
        return (self.embedded - self.warmup_views) / seconds if seconds > 0 else 0.0
