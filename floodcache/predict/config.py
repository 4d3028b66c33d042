"""What `predict` is asked: one image (`PredictConfig`), a folder of them (`FolderConfig`), or
georeferenced scenes (`SceneConfig`). Torch-free, so that the command line reads its defaults
from here at once."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from floodcache.data.raster import RasterReading
from floodcache.predict.geotiff import PROBABILITIES
from floodcache.predict.tiles import check_tiling
from floodcache.settings import (
    AUTO_PRECISION,
    MAX_PIXELS,
    check_at_least,
    check_choice,
    check_precision,
)


@dataclass
class PredictConfig:
    """One image to segment with a fine-tuned decoder."""

    # the SAM checkpoint the run's cache was embedded with (None: the official one, or with
    # random_weights the seeded untrained SAM of a random-weights run)
    checkpoint: Path | None
    decoder: Path  # run folder written by `train`
    image: Path
    out: Path  # the mask as PNG: 255 = water, 0 = not water, the image's size
    points: tuple[tuple[float, float], ...] = ()  # water clicks, XY original-image pixels
    background: tuple[tuple[float, float], ...] = ()  # not-water clicks, XY pixels
    box: tuple[float, float, float, float] | None = None  # XYXY original-image pixels
    device: str | None = None
    precision: str = AUTO_PRECISION  # the encoder's, as embed's: `resolve_precision`
    overwrite: bool = False  # replace an existing `out` file
    max_pixels: int = MAX_PIXELS  # a larger image is refused, never decoded
    random_weights: bool = False  # for a run embedded with --random-weights

    def __post_init__(self) -> None:
        check_precision(self.precision, "encoder")
        check_at_least(self.max_pixels, 1, "--max-pixels")
        for flag, values in self.prompt_values():
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{flag} {_shown(values)}: every coordinate must be a number")
        if self.box is not None and not (self.box[0] < self.box[2] and self.box[1] < self.box[3]):
            raise ValueError(f"--box {_shown(self.box)}: give X0,Y0,X1,Y1 with X0 < X1, Y0 < Y1")

    def prompt_values(self) -> list[tuple[str, tuple[float, ...]]]:
        """(flag, its numbers) of each click and the box, to check them."""
        clicks = [("--point", p) for p in self.points] + [
            ("--background", p) for p in self.background
        ]
        return clicks + ([("--box", self.box)] if self.box is not None else [])

    def check_inside(self, height: int, width: int) -> None:
        """ValueError naming the flag where a click or the box lies outside the image: SAM
        would take it, and give a mask of nothing."""
        for flag, values in self.prompt_values():
            xs, ys = values[0::2], values[1::2]
            if not (all(0 <= x <= width for x in xs) and all(0 <= y <= height for y in ys)):
                raise ValueError(
                    f"{flag} {_shown(values)} is outside the image {self.image} "
                    f"({width} x {height} pixels, X from 0 to {width}, Y from 0 to {height})"
                )


def _shown(values) -> str:
    return ",".join(f"{v:g}" for v in values)


@dataclass
class FolderConfig:
    """Every file of a folder, segmented prompt-free with a fine-tuned decoder."""

    # the SAM checkpoint the run's cache was embedded with (None: the official one, or with
    # random_weights the seeded untrained SAM of a random-weights run)
    checkpoint: Path | None
    decoder: Path  # run folder written by `train` (trained on `none`, for prompt-free masks)
    images: Path  # a folder: each visible file in it is read as an image (not subfolders)
    out: Path  # another folder: one mask <stem>.png per image (255 = water), and SUMMARY
    overwrite: bool = False  # segment again images whose mask an earlier run wrote
    device: str | None = None
    precision: str = AUTO_PRECISION  # the encoder's, as embed's: `resolve_precision`
    progress: bool = True
    max_pixels: int = MAX_PIXELS  # a larger image is listed as unreadable, never decoded
    random_weights: bool = False  # for a run embedded with --random-weights

    def __post_init__(self) -> None:
        check_precision(self.precision, "encoder")
        check_at_least(self.max_pixels, 1, "--max-pixels")


@dataclass
class SceneConfig:
    """A georeferenced raster, or a folder of them, segmented prompt-free tile by tile into
    water masks on the same grid."""

    # the SAM checkpoint the run's cache was embedded with (None: the official one, or with
    # random_weights the seeded untrained SAM of a random-weights run)
    checkpoint: Path | None
    decoder: Path  # run folder written by `train` (trained on `none`, for prompt-free masks)
    image: Path  # a raster with a CRS (GeoTIFF, COG...), or a folder of them
    # The water mask, a COG on the input's grid: 1 water, 0 land, 255 no data. For a folder,
    # a folder: <stem>.tif per scene and predictions.csv.
    out: Path
    polygons: Path | None = None  # the water as GeoJSON (a folder: <stem>.geojson per scene)
    min_area: float = 0.0  # m2: smaller polygons are left out of the GeoJSON
    probabilities: Path | None = None  # P(water) as a COG (a folder: <stem>.tif per scene)
    probability_dtype: str = "uint8"  # a key of geotiff.PROBABILITIES
    tile: int = 1024  # pixels a side at the scene's resolution: SAM's input, no resize
    overlap: int = 128  # pixels shared by neighbouring tiles, where their logits are blended
    raster: RasterReading = field(default_factory=RasterReading)  # bands and scaling
    device: str | None = None
    precision: str = AUTO_PRECISION  # the encoder's, as embed's: `resolve_precision`
    overwrite: bool = False  # replace existing outputs (a folder's: segment every scene again)
    progress: bool = True
    random_weights: bool = False  # for a run embedded with --random-weights

    def __post_init__(self) -> None:
        check_precision(self.precision, "encoder")
        check_tiling(self.tile, self.overlap)
        check_choice(self.probability_dtype, PROBABILITIES, "--probability-dtype")
        check_at_least(self.min_area, 0, "--min-area")
