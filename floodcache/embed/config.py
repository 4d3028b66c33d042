"""What `embed` is asked (`EmbedConfig`, checked when made) and what it did (`EmbedResult`).

Torch-free, so that the command line reads its defaults from here at once."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
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


@dataclass
class EmbedConfig:
    """Everything `embed` needs; `plan.identity_of` picks the fields that decide whether two
    caches differ."""

    cache: Path = Path("cache/flood.h5")  # the HDF5 cache to write
    data_dir: Path | None = None  # the Kaggle layout: Image/, Mask/, optional metadata.csv
    images: Path | None = None  # alternative to data_dir: a folder of images ...
    masks: Path | None = None  # ... and one of masks, paired by file stem
    checkpoint: Path | None = None  # default: the official file in the checkpoint folder
    random_weights: bool = False  # explicit opt-in to an untrained SAM (smoke tests only)
    model_type: str = "vit_b"
    augment: int = 0  # extra augmented views per training image
    seed: int = 0  # split and augmentation seed
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS  # train/val/test
    precision: str = AUTO_PRECISION  # fp16 on CUDA; CPU: bf16 where native, else fp32
    resize: str = "pil"  # to SAM's input: "pil" in the readers, "torch" on the device
    on_mismatch: str = "exclude"  # or "resize": resize a mask to its image
    # metadata.csv may name files outside Image/ and Mask/ (absolute, or up through ..): a
    # metadata.csv from elsewhere could otherwise have any file read into the cache
    allow_outside_paths: bool = False
    max_pixels: int = MAX_PIXELS  # a larger image or mask is left out, never decoded
    # Georeferenced images (GeoTIFF chips...): the bands shown to SAM and their scaling
    raster: RasterReading = field(default_factory=RasterReading)
    limit: int | None = None  # embed only the first N usable images (quick trials)
    # Views per encoder call and cache part (default: from the GPU's free memory, a few on a
    # CPU); does not change the result.
    batch_size: int | None = None
    workers: int | None = None  # processes reading and augmenting images (default_workers)
    compile: bool | None = None  # compile the fast encoder; default: where it pays off
    device: str | None = None  # default: cuda when available
    overwrite: bool = False  # replace an existing cache built differently
    progress: bool = True
    command: str = field(default_factory=lambda: " ".join(["python", *sys.argv]))

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
